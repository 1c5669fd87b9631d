"""Multilabel-stratified folds of a labelled split (``run`` holds one out, ``cv`` every one)."""

from __future__ import annotations

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData


def fold_indices(labels: np.ndarray, n_splits: int = 10, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """Multilabel-stratified K-fold split: a list of ``(train_idx, val_idx)``, deterministic in ``seed``."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    labels = np.asarray(labels)
    if n_splits < 2:
        raise GenEmotionError(f"folds must be at least 2, got {n_splits}")
    if len(labels) < n_splits:
        raise GenEmotionError(f"cannot split {len(labels)} rows into {n_splits} folds")
    # Stratified on every label at once (iterative stratification, Sechidis et al. 2011): a plain KFold can leave a
    # rare label (surprise, trust) with a few positives in one held-out fold and many in another, and macro-F1
    # weighs that label's noisy F1 as much as joy's. A row's labels go to one fold together, so the balance is
    # close, not exact. The splitter reads only X's length: a placeholder. Sorted indices keep file order.
    splitter = MultilabelStratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    placeholder = np.zeros((len(labels), 1))
    return [(np.sort(tr), np.sort(va)) for tr, va in splitter.split(placeholder, labels)]


def split_fold(data: EmotionData, fold: int, n_splits: int = 10, seed: int = 42) -> tuple[EmotionData, EmotionData]:
    """Hold out fold ``fold`` of ``data``: returns ``(train, held_out)``, each in file order."""
    if data.labels is None:
        raise GenEmotionError(f"{data.source}: cannot split a file without labels")
    if not 0 <= fold < n_splits:
        raise GenEmotionError(f"fold must be in 0..{n_splits - 1}, got {fold}")
    train_idx, val_idx = fold_indices(data.labels, n_splits, seed)[fold]
    return data.subset(train_idx), data.subset(val_idx)
