"""Label sets, their text rendering and the output grammar.

A ``LabelSet`` is an ordered list of label names (the data's label columns, in that order), optionally with
aliases (other words that name a label, for the parser) and descriptions (for the prompt), and optionally a
``none_label``: a label such as GoEmotions' ``neutral`` that means "no other label", which the model writes
for the empty set. The default is ``SEMEVAL``, the 11 labels of SemEval-2018 Task 1 E-c. A set knows how a
0/1 vector is written as the model's target text, and the regular expression that constrains generation to
exactly those texts. The module-level functions are the SemEval set's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

LABELS: tuple[str, ...] = (
    "anger",
    "anticipation",
    "disgust",
    "fear",
    "joy",
    "love",
    "optimism",
    "pessimism",
    "sadness",
    "surprise",
    "trust",
)
"""The labels of SemEval-2018 Task 1 E-c, in canonical (column) order."""

NUM_LABELS = len(LABELS)
NONE_TEXT = "none"
"""Target text for a text with no label (unless the set has a ``none_label``)."""
SEPARATOR = ", "
"""Between two labels in a target."""
TARGET_FORMATS = ("labels", "python_list")
"""``labels``: ``anger, joy`` or ``none``; ``python_list``: ``['anger', 'joy']`` or ``[]``."""


def _escape(text: str) -> str:
    """Escape regex metacharacters only (spaces and quotes stay literal for grammar engines)."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def _check_format(target_format: str) -> None:
    if target_format not in TARGET_FORMATS:
        raise ValueError(f"target_format must be one of {TARGET_FORMATS}, got {target_format!r}")


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of labels (see the module docstring)."""

    names: tuple[str, ...]
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``(name, (alias, ...))`` pairs: other words that name the label (the parser reads them)."""
    descriptions: tuple[tuple[str, str], ...] = ()
    """``(name, description)`` pairs, given to the prompt templates."""
    none_label: str | None = None

    def __post_init__(self) -> None:
        names = self.names
        if not names:
            raise ValueError("a label set needs at least one label")
        for name in names:
            if not isinstance(name, str) or not name.strip() or name != name.strip():
                raise ValueError(f"label {name!r}: a label is a non-empty name without surrounding spaces")
            if SEPARATOR.strip() in name or "'" in name:
                raise ValueError(f"label {name!r}: a label name holds no comma or quote (they delimit targets)")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"label {repeated[0]!r} is given twice")
        if self.none_label is not None and self.none_label not in names:
            raise ValueError(f"none_label {self.none_label!r} is not one of the labels ({', '.join(names)})")
        if self.none_label is None and NONE_TEXT in names:
            raise ValueError(f"a label called {NONE_TEXT!r} must be the set's none_label")
        if len(self.targets) == 0:
            raise ValueError("a label set needs at least one label besides its none_label")
        for name, _ in (*self.aliases, *self.descriptions):
            if name not in names:
                raise ValueError(f"alias or description for {name!r}, which is not one of the labels")

    @classmethod
    def from_spec(cls, spec: Sequence[Any] | None, none_label: str | None = None) -> LabelSet:
        """A set from a recipe's ``data.labels``: ``None`` (the SemEval 11) or a list whose entries are names or
        mappings ``{name, aliases, description}``."""
        if spec is None:
            return SEMEVAL if none_label is None else cls(LABELS, none_label=none_label)
        names, aliases, descriptions = [], [], []
        for entry in spec:
            if isinstance(entry, str):
                names.append(entry)
                continue
            if not isinstance(entry, Mapping) or "name" not in entry or set(entry) - {"name", "aliases", "description"}:
                raise ValueError(f"label entry {entry!r}: a name, or a mapping of name, aliases and description")
            name = str(entry["name"])
            names.append(name)
            words = entry.get("aliases") or []
            words = [words] if isinstance(words, str) else list(words)
            if words:
                aliases.append((name, tuple(str(word) for word in words)))
            if entry.get("description"):
                descriptions.append((name, str(entry["description"])))
        return cls(tuple(names), tuple(aliases), tuple(descriptions), none_label)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def targets(self) -> tuple[str, ...]:
        """The labels a target text lists: all but the ``none_label``."""
        return tuple(name for name in self.names if name != self.none_label)

    @property
    def none_text(self) -> str:
        """What the model writes for no label: the ``none_label``'s name, or ``none``."""
        return self.none_label or NONE_TEXT

    def alias_map(self) -> dict[str, str]:
        """Lower-case words that name a label: the names and the aliases."""
        words = {name.lower(): name for name in self.names}
        for name, others in self.aliases:
            words.update({other.lower(): name for other in others})
        return words

    def description(self, name: str) -> str:
        return dict(self.descriptions).get(name, "")

    def check_vector(self, vector: Sequence[int] | np.ndarray) -> np.ndarray:
        """``vector`` as an int array of one 0/1 per label, or ``ValueError``."""
        arr = np.asarray(vector)
        if arr.shape != (len(self.names),):
            raise ValueError(f"expected {len(self.names)} label values, got shape {arr.shape}")
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"label values must be 0 or 1, got {arr.tolist()}")
        return arr.astype(np.int64)

    def chosen(self, vector: Sequence[int] | np.ndarray) -> list[str]:
        """The target labels a vector names, in order (the ``none_label`` never)."""
        arr = self.check_vector(vector)
        return [name for name, on in zip(self.names, arr) if on and name != self.none_label]

    def render(self, vector: Sequence[int] | np.ndarray, target_format: str = "labels") -> str:
        """A 0/1 vector as a target: ``anger, disgust`` (or the none text), or a Python list (``['anger']``)."""
        _check_format(target_format)
        chosen = self.chosen(vector)
        if target_format == "python_list":
            return repr(chosen)
        return SEPARATOR.join(chosen) if chosen else self.none_text

    def vector_from_names(self, names: Iterable[str]) -> np.ndarray:
        """The 0/1 vector with a one for each label in ``names``; with a ``none_label``, an empty choice is it."""
        index = {name: i for i, name in enumerate(self.names)}
        out = np.zeros(len(self.names), dtype=np.int64)
        for name in names:
            if name not in index:
                raise ValueError(f"unknown label {name!r}; labels are: {', '.join(self.names)}")
            out[index[name]] = 1
        return self.with_none(out)

    def with_none(self, vector: np.ndarray) -> np.ndarray:
        """``vector`` with the ``none_label`` set exactly when no other label is."""
        if self.none_label is not None:
            at = self.names.index(self.none_label)
            vector[at] = 0
            vector[at] = int(not vector.any())
        return vector

    def output_regex(self, target_format: str = "labels") -> str:
        """The output grammar as a regular expression.

        It admits exactly the targets ``render`` writes: the none text (or ``[]``) or a non-empty subset of the
        target labels in order, without repeats, joined by ``", "``. The expression is one alternative per first
        label, each followed by the later labels as optional groups, so it grows with the square of the label
        count (about 1,000 characters for 11 labels) instead of with the number of subsets.
        """
        _check_format(target_format)
        quote, opening, closing, empty = ("", "", "", self.none_text)
        if target_format == "python_list":
            quote, opening, closing, empty = ("'", "[", "]", "[]")
        items = [_escape(f"{quote}{label}{quote}") for label in self.targets]
        sep = _escape(SEPARATOR)
        branches = [first + "".join(f"(?:{sep}{later})?" for later in items[i + 1 :]) for i, first in enumerate(items)]
        subsets = "(?:" + "|".join(branches) + ")"
        return f"(?:{_escape(empty)}|{_escape(opening)}{subsets}{_escape(closing)})"

    def is_canonical(self, text: str, target_format: str = "labels") -> bool:
        """True when ``text`` is exactly a string of the output grammar."""
        return _pattern(self, target_format).fullmatch(text) is not None

    def from_canonical(self, text: str, target_format: str = "labels") -> np.ndarray | None:
        """The vector a string of the output grammar names, or ``None`` for any other text."""
        if not self.is_canonical(text, target_format):
            return None
        if target_format == "python_list":
            names = [] if text == "[]" else [item.strip("'") for item in text[1:-1].split(SEPARATOR)]
        else:
            names = [] if text == self.none_text else text.split(SEPARATOR)
        return self.vector_from_names(names)

    def max_new_tokens(self, target_format: str = "labels") -> int:
        """Enough new tokens for any string of the output grammar, however it is tokenised.

        A constrained decoder may spell a label in more tokens than the tokenizer would (one token per character
        at worst), so the bound is the longest string's length in characters plus the end-of-turn token. Greedy
        batches stop when every row has ended, so the bound costs nothing.
        """
        every = np.ones(len(self.names), dtype=np.int64)
        return max(len(self.render(every, target_format)), len(self.none_text)) + 2

    def to_spec(self) -> list[Any] | None:
        """The ``data.labels`` a recipe writes for this set (``None`` for the SemEval default)."""
        if self == SEMEVAL or (self.names == LABELS and not self.aliases and not self.descriptions):
            return None
        aliases, descriptions = dict(self.aliases), dict(self.descriptions)
        entries: list[Any] = []
        for name in self.names:
            extra = {"aliases": list(aliases[name])} if name in aliases else {}
            extra.update({"description": descriptions[name]} if name in descriptions else {})
            entries.append({"name": name, **extra} if extra else name)
        return entries


@lru_cache(maxsize=64)
def _pattern(labels: LabelSet, target_format: str) -> re.Pattern[str]:
    return re.compile(labels.output_regex(target_format))


SEMEVAL = LabelSet(LABELS)
"""The 11 labels of SemEval-2018 Task 1 E-c."""


def check_vector(vector: Sequence[int] | np.ndarray) -> np.ndarray:
    """``vector`` as an int array of 11 zeros and ones, or ``ValueError`` (the SemEval set)."""
    return SEMEVAL.check_vector(vector)


def render_target(vector: Sequence[int] | np.ndarray) -> str:
    """A 0/1 vector as the target text: ``"anger, disgust"``, or ``"none"`` for all zeros."""
    return SEMEVAL.render(vector, "labels")


def render_target_list(vector: Sequence[int] | np.ndarray) -> str:
    """A 0/1 vector as a Python list, the original study's target: ``"['anger', 'disgust']"``."""
    return SEMEVAL.render(vector, "python_list")


def vector_from_names(names: Iterable[str]) -> np.ndarray:
    """The 0/1 vector with a one for each SemEval label name in ``names``."""
    return SEMEVAL.vector_from_names(names)


def render(vector: Sequence[int] | np.ndarray, target_format: str = "labels", labels: LabelSet = SEMEVAL) -> str:
    """A 0/1 vector as a target in ``target_format``."""
    return labels.render(vector, target_format)


def output_regex(labels: LabelSet | Sequence[str] = SEMEVAL, target_format: str = "labels") -> str:
    """The output grammar of ``labels`` (a set, or plain names) as a regular expression (``LabelSet.output_regex``)."""
    label_set = labels if isinstance(labels, LabelSet) else LabelSet(tuple(labels))
    return label_set.output_regex(target_format)


def grammar_max_new_tokens(target_format: str = "labels", labels: LabelSet = SEMEVAL) -> int:
    """Enough new tokens for any string of the output grammar (``LabelSet.max_new_tokens``)."""
    return labels.max_new_tokens(target_format)


OUTPUT_REGEX = output_regex()
"""The output grammar for the 11 labels."""


def is_canonical(text: str, target_format: str = "labels", labels: LabelSet = SEMEVAL) -> bool:
    """True when ``text`` is exactly a string of the output grammar."""
    return labels.is_canonical(text, target_format)
