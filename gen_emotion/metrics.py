"""Scores for multilabel emotion predictions: macro-F1 (the one that decides), micro-F1,
per-label precision/recall/F1/support and the sample-averaged Jaccard of SemEval-2018."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import f1_score, jaccard_score, precision_recall_fscore_support

from gen_emotion.labels import LABELS, NUM_LABELS


def check_label_matrix(y: Any, name: str = "y") -> np.ndarray:
    """Return ``y`` as an ``(n, 11)`` int array of zeros and ones, or raise ``ValueError``."""
    try:
        arr = np.asarray(y)
    except ValueError:  # ragged rows
        raise ValueError(f"{name} must have shape (n, {NUM_LABELS}); its rows have different lengths") from None
    if arr.ndim != 2 or arr.shape[1] != NUM_LABELS:
        raise ValueError(f"{name} must have shape (n, {NUM_LABELS}), got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return arr.astype(np.int64)


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = check_label_matrix(y_true, "y_true"), check_label_matrix(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {len(t)} rows but y_pred has {len(p)}")
    if len(t) == 0:
        raise ValueError("cannot score zero rows")
    return t, p


def macro_f1(y_true: Any, y_pred: Any) -> float:
    """Unweighted mean of the 11 per-label F1 scores (a label never predicted nor present scores 0)."""
    t, p = _pair(y_true, y_pred)
    return float(f1_score(t, p, average="macro", zero_division=0))


def micro_f1(y_true: Any, y_pred: Any) -> float:
    """F1 over all label decisions pooled."""
    t, p = _pair(y_true, y_pred)
    return float(f1_score(t, p, average="micro", zero_division=0))


def jaccard(y_true: Any, y_pred: Any) -> float:
    """SemEval-2018 E-c accuracy: mean over tweets of |gold ∩ pred| / |gold ∪ pred|, 1 when both are empty."""
    t, p = _pair(y_true, y_pred)
    return float(jaccard_score(t, p, average="samples", zero_division=1.0))


def per_label(y_true: Any, y_pred: Any) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each label."""
    t, p = _pair(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    return {
        label: {"precision": float(pr), "recall": float(rc), "f1": float(f), "support": int(s)}
        for label, pr, rc, f, s in zip(LABELS, precision, recall, f1, support)
    }


def score(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """All scores in one dict with keys ``macro_f1``, ``micro_f1``, ``jaccard``, ``per_label``, ``rows``."""
    t, p = _pair(y_true, y_pred)
    return {
        "macro_f1": macro_f1(t, p),
        "micro_f1": micro_f1(t, p),
        "jaccard": jaccard(t, p),
        "per_label": per_label(t, p),
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
