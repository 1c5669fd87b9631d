"""Multilabel-stratified folds (``data/folds.py``): deterministic, a partition of the rows, stratified on every
label, and fold ``k`` held out in file order."""

from __future__ import annotations

import numpy as np
import pytest

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import EmotionData
from gen_emotion.data.folds import fold_indices, split_fold


@pytest.fixture(scope="module")
def synthetic_labels() -> np.ndarray:
    rng = np.random.default_rng(2018)
    rates = np.linspace(0.2, 0.4, 11)
    return (rng.random((500, 11)) < rates).astype(np.int64)


@pytest.fixture(scope="module")
def folds(synthetic_labels):
    return fold_indices(synthetic_labels, n_splits=10, seed=42)


def test_fold_count_and_types(folds, synthetic_labels):
    assert len(folds) == 10
    for train_idx, val_idx in folds:
        assert train_idx.dtype.kind == "i"
        assert val_idx.dtype.kind == "i"
        assert len(train_idx) + len(val_idx) == len(synthetic_labels)
        assert 40 <= len(val_idx) <= 60


def test_folds_are_deterministic(folds, synthetic_labels):
    again = fold_indices(synthetic_labels, n_splits=10, seed=42)
    for (a_tr, a_va), (b_tr, b_va) in zip(folds, again):
        assert np.array_equal(a_tr, b_tr)
        assert np.array_equal(a_va, b_va)
    other = fold_indices(synthetic_labels, n_splits=10, seed=7)
    assert any(not np.array_equal(a_va, b_va) for (_, a_va), (_, b_va) in zip(folds, other))


def test_validation_folds_partition_the_rows(folds, synthetic_labels):
    n = len(synthetic_labels)
    all_val = np.concatenate([val_idx for _, val_idx in folds])
    assert sorted(all_val.tolist()) == list(range(n))  # every row exactly once
    for train_idx, val_idx in folds:
        assert not set(train_idx.tolist()) & set(val_idx.tolist())
        assert sorted(np.concatenate([train_idx, val_idx]).tolist()) == list(range(n))
        assert np.all(np.diff(train_idx) > 0)  # sorted, no repeats
        assert np.all(np.diff(val_idx) > 0)


def test_folds_are_stratified(folds, synthetic_labels):
    overall = synthetic_labels.mean(axis=0)
    deviation = np.array([np.abs(synthetic_labels[val].mean(axis=0) - overall) for _, val in folds])
    assert deviation.shape == (10, 11)
    # A random fold of m = 50 rows has a positive rate with standard error sqrt(p (1 - p) / m) ~ 0.065
    # at p = 0.3, so a plain random split gives a mean absolute deviation of about 0.8 * 0.065 = 0.052
    # and only ~56% of (fold, label) cells within 0.05. Iterative stratification is far tighter on
    # average (though a few cells can still be off where 11 dense labels compete).
    assert deviation.mean() <= 0.03, deviation.mean()
    assert (deviation <= 0.05).mean() >= 0.8, (deviation <= 0.05).mean()
    assert deviation.max() <= 0.25, deviation.max()


def test_fold_errors(synthetic_labels):
    with pytest.raises(GenEmotionError, match="at least 2"):
        fold_indices(synthetic_labels, n_splits=1)
    with pytest.raises(GenEmotionError, match="cannot split 5 rows"):
        fold_indices(synthetic_labels[:5], n_splits=10)


def _data_from(labels: np.ndarray) -> EmotionData:
    n = len(labels)
    return EmotionData(ids=[f"id{i:04d}" for i in range(n)], texts=[f"t{i}" for i in range(n)], labels=labels)


def test_split_fold_returns_file_ordered_subsets(synthetic_labels, folds):
    data = _data_from(synthetic_labels)
    for fold in (0, 3, 9):
        train, held = split_fold(data, fold, n_splits=10, seed=42)
        train_idx, val_idx = folds[fold]
        assert held.ids == [data.ids[i] for i in val_idx]
        assert train.ids == [data.ids[i] for i in train_idx]
        assert held.ids == sorted(held.ids)  # file order (IDs were written in order)
        assert train.ids == sorted(train.ids)
        assert held.texts == [data.texts[i] for i in val_idx]
        assert np.array_equal(held.labels, synthetic_labels[val_idx])
        assert np.array_equal(train.labels, synthetic_labels[train_idx])
        assert not set(train.ids) & set(held.ids)
        assert len(train) + len(held) == len(data)


def test_split_fold_errors(synthetic_labels):
    data = _data_from(synthetic_labels)
    with pytest.raises(GenEmotionError, match="fold"):
        split_fold(data, 10, n_splits=10)
    with pytest.raises(GenEmotionError, match="fold"):
        split_fold(data, -1, n_splits=10)
    unlabelled = EmotionData(ids=["a", "b"], texts=["x", "y"], labels=None, source="t.csv")
    with pytest.raises(GenEmotionError, match="t.csv"):
        split_fold(unlabelled, 0)
