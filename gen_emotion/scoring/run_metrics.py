"""The figures a trained folder keeps, typed: a run's ``metrics.json`` (``RunMetrics``) and a cv's or an ensemble's
``oof_metrics.json`` (``CvMetrics``, ``EnsembleMetrics``).

A class's fields are the file's keys in the order they are written (``to_dict``), so the JSON is what it was when
these were plain dicts, byte for byte; nested figures (per label, per fold, timings) stay mappings. Reading
(``from_dict``) keeps the known keys and gives a missing one its default, so a folder from an older version still
reads; ``folder_metrics`` checks the fields that ensembles and reports read (``check_folder_metrics``). ``runs``
reads and writes the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS

OMITTED_WHEN_NONE = frozenset({"peak_cuda_mib", "peak_cuda_reserved_mib", "candidates", "seed", "test"})
"""Keys written only where they have a value (a cv without CUDA; an ensemble that was not a search, or one made
before its seed was recorded; data whose test split has no gold labels)."""

Figures = TypeVar("Figures", bound="_Figures")


class _Figures:
    """Writing and reading a figures dataclass as its JSON mapping."""

    def to_dict(self) -> dict[str, Any]:
        """The file's mapping: every field in order, those of ``OMITTED_WHEN_NONE`` only where set."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return {key: value for key, value in values.items() if not (key in OMITTED_WHEN_NONE and value is None)}

    @classmethod
    def from_dict(cls: type[Figures], values: dict[str, Any]) -> Figures:
        """The known keys of a file's mapping (a missing one takes its default; unknown ones are dropped)."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclass
class RunMetrics(_Figures):
    """A run's ``metrics.json``: the held-out fold's scores, the decision the submission uses, and what it cost."""

    recipe: str = ""
    task: str = ""
    model: str = ""
    held_out: dict[str, Any] = field(default_factory=dict)
    """The held-out fold (``fold``, ``folds``) and its scores of the base decision (``metrics.score``)."""
    decision: str | None = None
    """``thresholds`` where the tuned thresholds won, else the task's base decision (``greedy``, ``0.5``...)."""
    held_out_final_macro_f1: float | None = None
    probabilities: dict[str, Any] | None = None
    """Where the task gives probabilities: the thresholds and their in-sample and cross-validated figures."""
    outputs: dict[str, Any] | None = None
    test_rows: int = 0
    test: dict[str, Any] | None = None
    """Where the test split has gold labels (a hub dataset's): its scores as submitted (``metrics.score``)."""
    training: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    backend: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def honest_macro_f1(self) -> float:
        """The held-out macro-F1 of the run's decision, honestly: the base decision's, or where the tuned thresholds
        won, their cross-validated figure (tuned on 4/5 of the held-out rows, scored on the other 1/5, pooled)."""
        if self.decision == "thresholds" and self.probabilities is not None:
            return float(self.probabilities["thresholded_macro_f1_cv"])
        return float(self.held_out["macro_f1"])


@dataclass
class CvMetrics(_Figures):
    """A cv's ``oof_metrics.json``: the out-of-fold scores at the tuned thresholds, per fold, and what it cost."""

    name: str = ""
    kind: str = "cv"
    task: str = ""
    model: str = ""
    has_probabilities: bool = False
    folds: int | None = None
    seed: int | None = None
    """The recipe's ``data.seed``: of the folds and of the honest figure's splits."""
    macro_f1: float = 0.0
    micro_f1: float | None = None
    jaccard: float | None = None
    rows: int | None = None
    macro_f1_at_0_5: float | None = None
    macro_f1_thresholds_cv: float | None = None
    """The honest figure: thresholds tuned on 4/5 of the rows, scored on the other 1/5 (none for 0/1 votes)."""
    per_label: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    per_fold: list[dict[str, Any]] = field(default_factory=list)
    per_fold_macro_f1_mean: float | None = None
    per_fold_macro_f1_std: float | None = None
    test_rows: int | None = None
    test: dict[str, Any] | None = None
    """Where the test split has gold labels: the submission's scores on it (``metrics.score``)."""
    wall_s: float | None = None
    this_call_s: float | None = None
    peak_rss_mib: float | None = None
    peak_cuda_mib: float | None = None
    peak_cuda_reserved_mib: float | None = None
    note: str = ""
    data: str = ""
    finished: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def honest_macro_f1(self) -> float:
        """The out-of-fold macro-F1 with thresholds tuned on other rows (``macro_f1_thresholds_cv``); a cv of 0/1
        votes tunes none, so its ``macro_f1`` is already honest."""
        return float(self.macro_f1 if self.macro_f1_thresholds_cv is None else self.macro_f1_thresholds_cv)


@dataclass
class EnsembleMetrics(_Figures):
    """An ensemble's ``oof_metrics.json``: its members, how it combined them, and the out-of-fold scores."""

    name: str = ""
    kind: str = "ensemble"
    mode: str | None = None
    """``average``, ``vote`` or ``stack``."""
    weighted: bool = False
    has_probabilities: bool = False
    seed: int | None = None
    """The honest figure's seed: its first member's (whose rows, in their order, it scores); absent from an
    ensemble made before it was recorded (its figure used 0)."""
    members: list[dict[str, Any]] = field(default_factory=list)
    """Each member's ``name``, ``run_dir`` (``folder`` in an exported ensemble), ``macro_f1``, ``weight`` and
    ``has_probabilities``."""
    macro_f1: float = 0.0
    micro_f1: float | None = None
    jaccard: float | None = None
    rows: int | None = None
    macro_f1_at_0_5: float | None = None
    macro_f1_thresholds_cv: float | None = None
    best_member_macro_f1: float | None = None
    per_label: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    test_rows: int | None = None
    wall_s: float | None = None
    peak_rss_mib: float | None = None
    note: str = ""
    candidates: list[dict[str, Any]] | None = None
    """A search's every candidate (``search_ensembles``)."""


FolderMetrics = CvMetrics | EnsembleMetrics

NUMBERS = ("macro_f1", "macro_f1_thresholds_cv", "per_fold_macro_f1_std", "micro_f1", "jaccard", "wall_s")


def folder_metrics(values: dict[str, Any]) -> FolderMetrics:
    """An ``oof_metrics.json`` mapping as its kind's class (an ensemble's where ``kind`` says so, else a cv's)."""
    return (EnsembleMetrics if values.get("kind") == "ensemble" else CvMetrics).from_dict(values)


def check_folder_metrics(values: dict[str, Any], path: Path, names: tuple[str, ...] = LABELS) -> dict[str, Any]:
    """The fields of an ``oof_metrics.json`` that ensembles and reports read, checked: a damaged or foreign file
    is a one-line error naming the file and the field."""
    expected = "expected the oof_metrics.json of gen-emotion cv or ensemble"

    def damaged(field: str, what: str) -> GenEmotionError:
        return GenEmotionError(f"{path}: damaged: {field} must be {what}; {expected}")

    for key in NUMBERS + ("peak_rss_mib",):
        value = values.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise damaged(key, "a number")
    if not isinstance(values.get("macro_f1"), (int, float)):
        raise damaged("macro_f1", "a number")
    if not isinstance(values.get("name", ""), str) or not isinstance(values.get("has_probabilities", False), bool):
        raise damaged("name and has_probabilities", "a string and true/false")
    per_label = values.get("per_label")
    if not isinstance(per_label, dict) or any(
        not isinstance(per_label.get(label), dict) or not isinstance(per_label[label].get("f1"), (int, float))
        for label in names
    ):
        raise damaged(
            "per_label", f"a mapping of each of the {len(names)} labels to its precision, recall, f1 and support"
        )
    return values
