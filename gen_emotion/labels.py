"""The 11 emotion labels, their text rendering and the output grammar.

Everything that knows the label set lives here: the canonical order, how a 0/1 vector is
written as the model's target text, and the regular expression that constrains generation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

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
"""Target text for a tweet with no emotion."""
SEPARATOR = ", "
"""Between two labels in a target."""


def check_vector(vector: Sequence[int] | np.ndarray) -> np.ndarray:
    """Return ``vector`` as an int array of 11 zeros and ones, or raise ``ValueError``."""
    arr = np.asarray(vector)
    if arr.shape != (NUM_LABELS,):
        raise ValueError(f"expected {NUM_LABELS} label values, got shape {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"label values must be 0 or 1, got {arr.tolist()}")
    return arr.astype(np.int64)


def render_target(vector: Sequence[int] | np.ndarray) -> str:
    """Write a 0/1 vector as the target text: ``"anger, disgust"``, or ``"none"`` for all zeros."""
    arr = check_vector(vector)
    names = [label for label, on in zip(LABELS, arr) if on]
    return SEPARATOR.join(names) if names else NONE_TEXT


def render_target_list(vector: Sequence[int] | np.ndarray) -> str:
    """Write a 0/1 vector as a Python list, the original study's target: ``"['anger', 'disgust']"``."""
    arr = check_vector(vector)
    return repr([label for label, on in zip(LABELS, arr) if on])


def vector_from_names(names: Iterable[str]) -> np.ndarray:
    """Return the 0/1 vector with a one for each canonical label name in ``names``."""
    index = {label: i for i, label in enumerate(LABELS)}
    out = np.zeros(NUM_LABELS, dtype=np.int64)
    for name in names:
        if name not in index:
            raise ValueError(f"unknown label {name!r}; labels are: {', '.join(LABELS)}")
        out[index[name]] = 1
    return out


def _escape(text: str) -> str:
    """Escape regex metacharacters only (spaces and quotes stay literal for grammar engines)."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


TARGET_FORMATS = ("labels", "python_list")
"""``labels``: ``anger, joy`` or ``none``; ``python_list``: ``['anger', 'joy']`` or ``[]``."""


def render(vector: Sequence[int] | np.ndarray, target_format: str = "labels") -> str:
    """Write a 0/1 vector as a target in ``target_format``."""
    if target_format == "labels":
        return render_target(vector)
    if target_format == "python_list":
        return render_target_list(vector)
    raise ValueError(f"target_format must be one of {TARGET_FORMATS}, got {target_format!r}")


def output_regex(labels: Sequence[str] = LABELS, target_format: str = "labels") -> str:
    """The output grammar as a regular expression.

    It admits exactly the targets ``render`` writes: ``none`` (or ``[]``) or a non-empty subset
    of ``labels`` in canonical order, without repeats, joined by ``", "``. The expression is one
    alternative per first label, each followed by the later labels as optional groups, so it
    grows with the square of the label count (about 1,000 characters for 11 labels) instead of
    with the number of subsets.
    """
    if target_format not in TARGET_FORMATS:
        raise ValueError(f"target_format must be one of {TARGET_FORMATS}, got {target_format!r}")
    quote, opening, closing, empty = ("", "", "", NONE_TEXT)
    if target_format == "python_list":
        quote, opening, closing, empty = ("'", "[", "]", "[]")
    items = [_escape(f"{quote}{label}{quote}") for label in labels]
    sep = _escape(SEPARATOR)
    branches = [first + "".join(f"(?:{sep}{later})?" for later in items[i + 1 :]) for i, first in enumerate(items)]
    subsets = "(?:" + "|".join(branches) + ")"
    return f"(?:{_escape(empty)}|{_escape(opening)}{subsets}{_escape(closing)})"


def grammar_max_new_tokens(target_format: str = "labels", labels: Sequence[str] = LABELS) -> int:
    """Enough new tokens for any string of the output grammar, however it is tokenised.

    A constrained decoder may spell a label in more tokens than the tokenizer would (one token
    per character at worst), so the bound is the longest string's length in characters plus the
    end-of-turn token. Greedy batches stop when every row has ended, so the bound costs nothing.
    """
    return len(render([1] * len(labels), target_format)) + 2


OUTPUT_REGEX = output_regex()
"""The output grammar for the 11 labels."""

_OUTPUT_PATTERN = re.compile(OUTPUT_REGEX)


def is_canonical(text: str, target_format: str = "labels") -> bool:
    """True when ``text`` is exactly a string of the output grammar."""
    pattern = _OUTPUT_PATTERN if target_format == "labels" else re.compile(output_regex(target_format=target_format))
    return pattern.fullmatch(text) is not None
