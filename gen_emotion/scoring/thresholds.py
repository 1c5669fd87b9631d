"""Per-label decision thresholds on probabilities, tuned for F1 on held-out rows only.

Rare labels (surprise, trust) decide macro-F1, and a hard greedy answer cannot be tuned: with a
probability per label, one threshold per label trades precision for recall where it pays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.scoring.metrics import check_label_matrix, macro_f1


def check_probabilities(probs: Any, name: str = "probs", width: int | None = None) -> np.ndarray:
    """Return ``probs`` as an ``(n, width)`` float array in [0, 1] (any width of at least 1 when ``width`` is
    ``None``), or raise ``ValueError``."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 1 or (width is not None and arr.shape[1] != width):
        raise ValueError(f"{name} must have shape (n, {'labels' if width is None else width}), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1]")
    return arr


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Midpoints between the distinct scores of one label, plus one below the lowest and one above
    the highest, so every distinct decision the label's scores allow is tried once."""
    values = np.unique(scores)
    mids = (values[:-1] + values[1:]) / 2
    return np.concatenate([[max(values[0] - 1e-6, 0.0)], mids, [min(values[-1] + 1e-6, 1.0)]])


def f1_at_thresholds(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of ``scores >= t`` against 0/1 ``y`` for every ``t`` in ``thresholds`` (one label), in
    O(n log n): with scores sorted, each threshold predicts a prefix positive."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_y = scores[order], y[order]
    true_positives = np.concatenate([[0], np.cumsum(sorted_y)])
    # predicted positives for threshold t: how many scores are >= t
    predicted = len(scores) - np.searchsorted(sorted_scores[::-1], thresholds, side="left")
    tp = true_positives[predicted]
    denominator = predicted + y.sum()
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def tune_thresholds(y_true: Any, probs: Any, default: float = 0.5) -> np.ndarray:
    """One threshold per label maximising that label's F1 on ``(y_true, probs)``.

    A row is predicted positive when ``prob >= threshold``. Ties between thresholds with the same
    F1 go to the one closest to ``default``; a label with no positive row keeps ``default``.
    """
    y = check_label_matrix(y_true, "y_true")
    p = check_probabilities(probs, width=y.shape[1])
    if len(y) != len(p):
        raise ValueError(f"y_true has {len(y)} rows but probs has {len(p)}")
    out = np.full(y.shape[1], default, dtype=np.float64)
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            continue
        candidates = candidate_thresholds(p[:, j])
        f1 = np.round(f1_at_thresholds(y[:, j], p[:, j], candidates), 12)
        best = np.flatnonzero(f1 == f1.max())
        out[j] = float(candidates[best[np.argmin(np.abs(candidates[best] - default))]])
    return out


def apply_thresholds(probs: Any, thresholds: Any) -> np.ndarray:
    """0/1 predictions: ``probs >= thresholds`` per label."""
    p = check_probabilities(probs)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (p.shape[1],):
        raise ValueError(f"thresholds must have {p.shape[1]} values, got shape {t.shape}")
    return (p >= t).astype(np.int64)


def cross_validated_macro_f1(y_true: Any, probs: Any, folds: int = 5, seed: int = 0) -> float:
    """An honest estimate of thresholded macro-F1 on unseen rows: thresholds tuned on the other
    folds of the held-out rows are applied to each fold, and the pooled predictions are scored."""
    return macro_f1(check_label_matrix(y_true, "y_true"), cross_validated_predictions(y_true, probs, folds, seed))


def cross_validated_predictions(y_true: Any, probs: Any, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The pooled 0/1 predictions that ``cross_validated_macro_f1`` scores: each fold of the rows cut at thresholds
    tuned on the others. Two models' predictions from the same ``seed`` are paired row by row
    (``metrics.paired_bootstrap``)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    # Thresholds fit the noise of the rows they are tuned on: their in-sample macro-F1 is optimistic, most for rare
    # labels with a handful of positives, where one row moves a threshold. Here each fold is scored with thresholds
    # it took no part in choosing (folds stratified on every label, so a rare label's few positives are spread),
    # and the pooled predictions give one figure for rows the thresholds never saw.
    y = check_label_matrix(y_true, "y_true")
    p = check_probabilities(probs)
    if len(y) < 2:
        raise GenEmotionError(f"thresholds are tuned on at least 2 held-out rows, got {len(y)}")
    predictions = np.zeros_like(y)
    # fewer held-out rows than folds (a tiny validation split): as many folds as rows, each row scored once
    splitter = MultilabelStratifiedKFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed)
    for tune_idx, apply_idx in splitter.split(np.zeros((len(y), 1)), y):
        predictions[apply_idx] = apply_thresholds(p[apply_idx], tune_thresholds(y[tune_idx], p[tune_idx]))
    return predictions


@dataclass
class ThresholdChoice:
    """Thresholds tuned on held-out rows, their macro-F1 there, and whether a run should use them."""

    thresholds: np.ndarray
    in_sample: float
    """Tuned and scored on the same rows (optimistic)."""
    cross_validated: float
    """Tuned on 4/5 of the rows, scored on the other 1/5, pooled (honest)."""
    use: bool
    """The cross-validated figure beats the baseline's macro-F1."""


def choose_thresholds(y_true: Any, probs: Any, baseline_macro_f1: float, seed: int = 0) -> ThresholdChoice:
    """Tune per-label thresholds on ``(y_true, probs)`` and keep them only when their cross-validated
    macro-F1 beats ``baseline_macro_f1`` (greedy outputs, or the 0.5 cut) on the same rows."""
    # The rows are ones the model did not train on (a run's held-out fold; cv and ensembles tune on out-of-fold
    # rows): on its own training rows its scores are surer than on unseen tweets and would misplace a threshold.
    # The thresholds kept are tuned on every row; whether to use them rests on the honest figure alone, so a run
    # never switches to thresholds on an in-sample gain that would not carry to test. That figure measures the
    # tuning itself (on 4/5 of the rows), a fair stand-in for these thresholds tuned on all of them.
    thresholds = tune_thresholds(y_true, probs)
    honest = cross_validated_macro_f1(y_true, probs, seed=seed)
    return ThresholdChoice(
        thresholds=thresholds,
        in_sample=macro_f1(y_true, apply_thresholds(probs, thresholds)),
        cross_validated=honest,
        use=honest > baseline_macro_f1,
    )


def thresholds_to_dict(thresholds: np.ndarray, names: Sequence[str] = LABELS) -> dict[str, float]:
    return {label: float(t) for label, t in zip(names, thresholds)}


def thresholds_from_dict(values: dict[str, float], names: Sequence[str] = LABELS) -> np.ndarray:
    missing = [label for label in names if label not in values]
    if missing:
        raise ValueError(f"thresholds missing for {', '.join(missing)}")
    return np.array([float(values[label]) for label in names])
