"""Scores for multilabel emotion predictions: macro-F1 (the one that decides), micro-F1,
per-label precision/recall/F1/support and the sample-averaged Jaccard of SemEval-2018."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gen_emotion.core.labels import LABELS


def check_label_matrix(y: Any, name: str = "y", width: int | None = None) -> np.ndarray:
    """Return ``y`` as an ``(n, width)`` int array of zeros and ones (any width of at least 1 when ``width`` is
    ``None``), or raise ``ValueError``."""
    shown = "labels" if width is None else width
    try:
        arr = np.asarray(y)
    except ValueError:  # ragged rows
        raise ValueError(f"{name} must have shape (n, {shown}); its rows have different lengths") from None
    if arr.ndim != 2 or arr.shape[1] < 1 or (width is not None and arr.shape[1] != width):
        raise ValueError(f"{name} must have shape (n, {shown}), got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.int64)


def _pair(y_true: Any, y_pred: Any, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    t = check_label_matrix(y_true, "y_true", width)
    p = check_label_matrix(y_pred, "y_pred", t.shape[1])
    if t.shape != p.shape:
        raise ValueError(f"y_true has {len(t)} rows but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("cannot score zero rows")
    return t, p


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Unweighted mean of the 11 per-label F1 scores (a label never predicted nor present scores 0)."""
    from sklearn.metrics import f1_score  # here, not above: scikit-learn is 1-3 s of every command's start-up

    t, p = _pair(y_true, y_pred)
    return float(f1_score(t, p, average="macro", zero_division=0))


def micro_f1(y_true: Any, y_pred: Any) -> float:
    """F1 over all label decisions pooled."""
    from sklearn.metrics import f1_score

    t, p = _pair(y_true, y_pred)
    return float(f1_score(t, p, average="micro", zero_division=0))


def jaccard(y_true: Any, y_pred: Any) -> float:
    """SemEval-2018 E-c accuracy: mean over tweets of |gold ∩ pred| / |gold ∪ pred|, 1 when both are empty."""
    from sklearn.metrics import jaccard_score

    t, p = _pair(y_true, y_pred)
    return float(jaccard_score(t, p, average="samples", zero_division=1.0))


def paired_bootstrap(y_true: Any, a: Any, b: Any, n: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Macro-F1 of predictions ``a`` minus that of ``b`` on the same rows, with a 95% paired bootstrap interval
    (the rows resampled together for both): ``{"diff": ..., "ci95": [low, high]}``. Each resample's per-label
    counts are its rows' multiplicities times the 0/1 matrices (the same figures as ``macro_f1`` of the resampled
    rows, in blocks of resamples at a time instead of one scikit-learn call each)."""
    y, pa = _pair(y_true, a)
    pb = _pair(y_true, b)[1]
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(n)]
    diffs = []
    for start in range(0, n, BOOTSTRAP_BLOCK):
        weights = np.stack([np.bincount(idx, minlength=len(y)) for idx in draws[start : start + BOOTSTRAP_BLOCK]])
        diffs.append(_weighted_macro_f1(weights, y, pa) - _weighted_macro_f1(weights, y, pb))
    low, high = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    return {"diff": macro_f1(y, pa) - macro_f1(y, pb), "ci95": [float(low), float(high)]}


BOOTSTRAP_BLOCK = 250


def _weighted_macro_f1(weights: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of ``weights`` (how many times each row is drawn): 2TP / (2TP + FP + FN) per label,
    0 where a label is neither gold nor predicted (``zero_division=0``), averaged over the labels."""
    w = weights.astype(np.float64)
    tp = w @ (y * p)
    fp = w @ ((1 - y) * p)
    fn = w @ (y * (1 - p))
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)


def per_label(y_true: Any, y_pred: Any, names: Sequence[str] = LABELS) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each label (the columns are ``names``, in order)."""
    from sklearn.metrics import precision_recall_fscore_support

    t, p = _pair(y_true, y_pred, len(names))
    precision, recall, f1, support = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    return {
        label: {"precision": float(pr), "recall": float(rc), "f1": float(f), "support": int(s)}
        for label, pr, rc, f, s in zip(names, precision, recall, f1, support)
    }


def score(y_true: Any, y_pred: Any, names: Sequence[str] = LABELS) -> dict[str, Any]:
    """All scores in one dict with keys ``macro_f1``, ``micro_f1``, ``jaccard``, ``per_label``, ``rows``; the
    columns are the labels ``names`` (the SemEval 11 by default)."""
    t, p = _pair(y_true, y_pred, len(names))
    return {
        "macro_f1": macro_f1(t, p),
        "micro_f1": micro_f1(t, p),
        "jaccard": jaccard(t, p),
        "per_label": per_label(t, p, names),
        "rows": int(len(t)),
    }


def format_table(scores: dict[str, Any]) -> str:
    """A plain-text table of the per-label scores and the summary figures."""
    lines = [f"{'label':<13}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}"]
    for label, row in scores["per_label"].items():
        lines.append(
            f"{label:<13}{row['precision']:>10.4f}{row['recall']:>10.4f}{row['f1']:>10.4f}{row['support']:>9d}"
        )
    lines.append("")
    lines.append(f"macro-F1  {scores['macro_f1']:.4f}")
    lines.append(f"micro-F1  {scores['micro_f1']:.4f}")
    lines.append(f"jaccard   {scores['jaccard']:.4f}")
    lines.append(f"rows      {scores['rows']}")
    return "\n".join(lines)
