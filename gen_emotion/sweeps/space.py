"""A sweep's space file: the recipe fields to search, each with a range or choices, and the search's own settings.

```yaml
params:
  classifier.logreg_c: {low: 0.25, high: 64, log: true}   # a float field: a range (log: sampled on a log scale)
  classifier.char_ngrams: {choices: [true, false]}         # any field: a list of values
  train.epochs: {low: 1, high: 4}                          # an int field: a range (step: 1 unless given)
sampler: {startup_trials: 10}
pruner: {startup_trials: 5, warmup_folds: 1}
```

Every name and value is checked against the recipe's declared fields before anything trains (``check_space``),
with the config engine itself (``config.fields.build`` through ``recipes.recipe_from_dict``): each candidate value
(a range's ends, each choice) is applied to the resolved recipe as an override would be, so an unknown field gets
the same did-you-mean and a value the field refuses the same words as ``key=value`` on the command line. What is
wrong with a range itself (low above high, a log range through 0) is said here. Every mistake is one line.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gen_emotion.config.fields import ConfigError, apply_override, arg, build, read_yaml
from gen_emotion.config.recipes import Recipe, RecipeError, recipe_from_dict
from gen_emotion.core.errors import GenEmotionError

SECTIONS = ("params", "sampler", "pruner")


class SpaceError(GenEmotionError):
    """A space file has mistakes: one line each."""


@dataclass
class ParamSpec:
    """One searched field: ``low``/``high`` (``log``, ``step``) for a number field, or ``choices`` for any."""

    low: float | None = arg(None, "the range's lower end (int and float fields)")
    high: float | None = arg(None, "the range's upper end, included")
    log: bool = arg(False, "sample on a log scale (both ends above 0)")
    step: float | None = arg(None, "the range's step (an int field: 1 unless given)", above=0)
    choices: list[Any] | None = arg(None, "the values to choose from (any field)")


@dataclass
class SamplerArgs:
    """Optuna's TPE sampler."""

    startup_trials: int = arg(10, "trials drawn at random (seeded by the trial's number) before TPE models", low=0)


@dataclass
class PrunerArgs:
    """Optuna's median pruner over a cv trial's folds."""

    enabled: bool = arg(True, "stop a cv trial whose folds so far are below the median of the finished trials'")
    startup_trials: int = arg(5, "finished trials before any trial is pruned", low=0)
    warmup_folds: int = arg(1, "folds every trial trains before it can be pruned", low=0)


@dataclass
class SpaceSettings:
    """The space file's sections beside ``params``."""

    sampler: SamplerArgs = arg(factory=SamplerArgs)
    pruner: PrunerArgs = arg(factory=PrunerArgs)


@dataclass(frozen=True)
class Param:
    """One checked searched field and its Optuna distribution."""

    name: str
    kind: str
    """``float``, ``int`` or ``choice``."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(self.choices)
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial: Any) -> Any:
        """The value of this field in ``trial`` (Optuna's ``suggest_*``: the stored or fixed value where it has one)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class Space:
    """A checked space file: its params in file order, and the sampler's and pruner's settings."""

    path: str
    params: tuple[Param, ...]
    settings: SpaceSettings = field(default_factory=SpaceSettings)

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        return {"params": [dataclasses.asdict(p) for p in self.params], **dataclasses.asdict(self.settings)}


def field_type(name: str) -> Any:
    """The declared type of recipe field ``name`` (``section.key``), ``None`` where there is no such field (the
    config engine says why, with its did-you-mean), or ``dict`` where it names a section."""
    cls: Any = Recipe
    for part in name.split("."):
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        cls = hints[part]
    return dict if dataclasses.is_dataclass(cls) else cls


def _number_kind(tp: Any) -> str | None:
    """``int`` or ``float`` where the field holds that number (``None`` allowed beside it), else ``None``."""
    options = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    numbers = [o for o in options if o is not type(None)]
    if numbers == [int]:
        return "int"
    if numbers == [float]:
        return "float"
    return None


def with_value(base: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    """A copy of recipe dict ``base`` with field ``name`` set to ``value``, as ``name=value`` on the command line."""
    values = json.loads(json.dumps(base))
    apply_override(values, f"{name}={json.dumps(value)}")
    return values


def _check_value(base: dict[str, Any], name: str, value: Any, where: str) -> None:
    """The config engine's own check of ``name=value`` on the resolved recipe (its fields and what ties them)."""
    try:
        recipe_from_dict(with_value(base, name, value), where=where)
    except (ConfigError, RecipeError) as err:
        raise SpaceError(str(err)) from None


def _shape(spec: ParamSpec, kind: str | None, tp: Any, where: str) -> tuple[str, list[Any]]:
    """The param's kind and the values that stand for it in the recipe check; a range's own mistakes."""
    if spec.choices is not None:
        if spec.low is not None or spec.high is not None:
            raise SpaceError(f"{where}: give choices or low/high, not both")
        if not spec.choices:
            raise SpaceError(f"{where}: choices is empty")
        bad = [c for c in spec.choices if not isinstance(c, (bool, int, float, str)) and c is not None]
        if bad:
            raise SpaceError(f"{where}: a choice must be a number, a string, true/false or null, got {bad[0]!r}")
        return "choice", list(spec.choices)
    if spec.low is None or spec.high is None:
        raise SpaceError(f"{where}: give low and high (a range) or choices")
    if kind is None:
        raise SpaceError(f"{where}: a range needs an int or float field; this one is {_name(tp)}: give choices")
    if spec.low > spec.high:
        raise SpaceError(f"{where}: low ({spec.low:g}) is above high ({spec.high:g})")
    if spec.log and spec.low <= 0:
        raise SpaceError(f"{where}: a log range must stay above 0, got low {spec.low:g}")
    if spec.log and spec.step is not None:
        raise SpaceError(f"{where}: a log range takes no step")
    if kind == "int" and any(v is not None and not float(v).is_integer() for v in (spec.low, spec.high, spec.step)):
        raise SpaceError(f"{where}: an int field's low, high and step must be whole numbers")
    ends = [int(spec.low), int(spec.high)] if kind == "int" else [float(spec.low), float(spec.high)]
    return kind, ends


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_param(base: dict[str, Any], name: str, raw: Any, where: str) -> Param:
    """One ``params`` entry checked (module docstring); a mistake is a ``SpaceError`` of one line."""
    tp = field_type(name)
    if tp is None:  # unknown: the config engine's own words and did-you-mean
        _check_value(base, name, None, where)
        raise SpaceError(f"{where}: no recipe field {name}")
    if tp is dict:
        raise SpaceError(f"{where}: {name} is a section of the recipe; name one of its fields ({name}.KEY)")
    try:
        spec = build(ParamSpec, raw if raw is not None else {}, where, whole=f"params.{name}", prefix="")
    except ConfigError as err:
        raise SpaceError(str(err)) from None
    kind, values = _shape(spec, _number_kind(tp), tp, where)
    for value in values:
        _check_value(base, name, value, where)
    if kind == "choice":
        return Param(name, kind, choices=tuple(values))
    step = spec.step if spec.step is not None else (1 if kind == "int" else None)
    return Param(name, kind, values[0], values[1], spec.log, step)


def read_space(path: Path, recipe: Recipe) -> Space:
    """Read and check ``path`` against the resolved ``recipe``; every mistake one line, all of them in one error."""
    values = _read(path)
    raw_params = values.get("params")
    if not isinstance(raw_params, dict) or not raw_params:
        raise SpaceError(f"{path}: params must map recipe fields (section.key) to a range or choices")
    try:
        settings = build(SpaceSettings, {k: v for k, v in values.items() if k != "params"}, str(path), "the space")
    except ConfigError as err:
        raise SpaceError(str(err)) from None
    base = recipe.to_dict()
    params, mistakes = [], []
    for name, raw in raw_params.items():
        try:
            params.append(check_param(base, str(name), raw, f"{path}: params.{name}"))
        except SpaceError as err:
            mistakes.append(str(err))
    if mistakes:
        raise SpaceError("\n".join(mistakes))
    return Space(str(path), tuple(params), settings)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpaceError(f"{path}: no such space file")
    try:
        values = read_yaml(path)
    except ConfigError as err:
        raise SpaceError(str(err)) from None
    if not isinstance(values, dict):
        raise SpaceError(f"{path}: a space file is a mapping with params (and optionally sampler, pruner)")
    unknown = [k for k in values if k not in SECTIONS]
    if unknown:
        import difflib

        close = difflib.get_close_matches(str(unknown[0]), SECTIONS, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known sections: {', '.join(SECTIONS)}"
        raise SpaceError(f"{path}: unknown section {unknown[0]!r}{hint}")
    return values


def overrides(params: dict[str, Any]) -> list[str]:
    """A trial's settings as ``section.key=value`` overrides (values as JSON, which YAML reads back the same)."""
    return [f"{name}={json.dumps(value)}" for name, value in params.items()]
