"""Scores: macro/micro-F1 and per-label figures against scikit-learn, the SemEval Jaccard, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import onehot
from sklearn.metrics import f1_score, precision_recall_fscore_support

from gen_emotion.core.labels import LABELS
from gen_emotion.scoring.metrics import (
    check_label_matrix,
    format_table,
    jaccard,
    macro_f1,
    micro_f1,
    paired_bootstrap,
    per_label,
    score,
)


def random_pair(n: int, seed: int, rate: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, 11)) < rate).astype(np.int64)
    flip = rng.random((n, 11)) < 0.25
    pred = np.where(flip, 1 - gold, gold)
    return gold, pred


@pytest.mark.parametrize(
    ("n", "seed", "rate"), [(1, 0, 0.5), (7, 1, 0.3), (50, 2, 0.1), (333, 3, 0.3), (2000, 4, 0.05)]
)
def test_against_sklearn(n, seed, rate):
    gold, pred = random_pair(n, seed, rate)
    assert macro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    assert micro_f1(gold, pred) == pytest.approx(f1_score(gold, pred, average="micro", zero_division=0))
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, average=None, zero_division=0)
    table = per_label(gold, pred)
    assert list(table) == list(LABELS)
    for k, label in enumerate(LABELS):
        assert table[label]["precision"] == pytest.approx(precision[k])
        assert table[label]["recall"] == pytest.approx(recall[k])
        assert table[label]["f1"] == pytest.approx(f1[k])
        assert table[label]["support"] == int(support[k]) == int(gold[:, k].sum())
    # macro-F1 is the unweighted mean of the per-label F1
    assert macro_f1(gold, pred) == pytest.approx(np.mean([table[label]["f1"] for label in LABELS]))


def test_against_a_direct_count():
    # Independent of scikit-learn: per-label F1 = 2 TP / (2 TP + FP + FN), 0 when the label is absent everywhere.
    gold, pred = random_pair(400, seed=11, rate=0.2)
    tp = (gold & pred).sum(axis=0)
    fp = ((1 - gold) & pred).sum(axis=0)
    fn = (gold & (1 - pred)).sum(axis=0)
    denom = 2 * tp + fp + fn
    per = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    assert macro_f1(gold, pred) == pytest.approx(per.mean())
    assert micro_f1(gold, pred) == pytest.approx(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))
    inter = (gold & pred).sum(axis=1)
    union = (gold | pred).sum(axis=1)
    rows = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert jaccard(gold, pred) == pytest.approx(rows.mean())


def test_perfect_and_inverted_predictions():
    gold, _ = random_pair(100, seed=5, rate=0.3)
    assert macro_f1(gold, gold) == pytest.approx(1.0)
    assert micro_f1(gold, gold) == pytest.approx(1.0)
    assert jaccard(gold, gold) == pytest.approx(1.0)
    assert macro_f1(gold, 1 - gold) == pytest.approx(0.0)
    assert micro_f1(gold, 1 - gold) == pytest.approx(0.0)


def test_tiny_hand_computed_example():
    gold = np.array([onehot("anger", "joy"), onehot("anger"), onehot("joy")])
    pred = np.array([onehot("anger"), onehot("anger", "joy"), onehot()])
    # anger: TP 2, FP 0, FN 0 -> P 1, R 1, F1 1
    # joy:   TP 0, FP 1, FN 2 -> P 0, R 0, F1 0
    # the 9 other labels: never present, never predicted -> F1 0 (zero_division=0)
    # macro-F1 = (1 + 0 + 9 * 0) / 11 = 1/11
    assert macro_f1(gold, pred) == pytest.approx(1 / 11)
    # micro: TP 2, FP 1, FN 2 -> P 2/3, R 2/4 = 1/2, F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert micro_f1(gold, pred) == pytest.approx(4 / 7)
    table = per_label(gold, pred)
    assert table["anger"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert table["joy"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert table["trust"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # jaccard per row: {anger, joy} vs {anger} = 1/2; {anger} vs {anger, joy} = 1/2; {joy} vs {} = 0/1 = 0
    # mean = (1/2 + 1/2 + 0) / 3 = 1/3
    assert jaccard(gold, pred) == pytest.approx(1 / 3)


def test_jaccard_counts_both_empty_as_one():
    gold = np.array([onehot("anger", "joy"), onehot(), onehot("fear"), onehot("love", "trust", "sadness")])
    pred = np.array([onehot("anger"), onehot(), onehot("sadness"), onehot("love", "trust", "surprise")])
    # row 1: |{anger}| / |{anger, joy}| = 1/2
    # row 2: gold and pred both empty -> 1
    # row 3: {fear} vs {sadness}: 0 / 2 = 0
    # row 4: {love, trust, sadness} vs {love, trust, surprise}: 2 / 4 = 1/2
    # mean = (0.5 + 1 + 0 + 0.5) / 4 = 0.5
    assert jaccard(gold, pred) == pytest.approx(0.5)
    assert jaccard(np.zeros((3, 11)), np.zeros((3, 11))) == pytest.approx(1.0)


def test_score_bundles_everything():
    gold, pred = random_pair(60, seed=9)
    result = score(gold, pred)
    assert set(result) == {"macro_f1", "micro_f1", "jaccard", "per_label", "rows"}
    assert result["macro_f1"] == macro_f1(gold, pred)
    assert result["micro_f1"] == micro_f1(gold, pred)
    assert result["jaccard"] == jaccard(gold, pred)
    assert result["per_label"] == per_label(gold, pred)
    assert result["rows"] == 60
    json.dumps(result)  # plain Python types only
    table = format_table(result)
    assert "macro-F1" in table
    assert all(label in table for label in LABELS)


def test_accepts_lists_and_bool_arrays():
    gold = [onehot("anger"), onehot("joy")]
    pred = np.array(gold, dtype=bool)
    assert macro_f1(gold, pred) == pytest.approx(2 / 11)  # anger and joy F1 = 1, nine labels 0


@pytest.mark.parametrize("func", [per_label, score])
@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        (np.zeros((3, 10)), np.zeros((3, 10)), r"shape \(n, 11\)"),  # the SemEval labels: 11 columns
        (np.zeros((3, 12)), np.zeros((3, 11)), r"y_true must have shape"),
    ],
)
def test_named_scores_need_one_column_per_label(func, gold, pred, message):
    with pytest.raises(ValueError, match=message):
        func(gold, pred)
    assert func(np.ones((2, 3)), np.ones((2, 3)), ("a", "b", "c")) is not None  # another label set


@pytest.mark.parametrize("func", [macro_f1, micro_f1, jaccard, per_label, score])
@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        (np.zeros((3, 11)), np.zeros((3, 12)), r"y_pred must have shape"),
        (np.zeros((3, 11)), np.zeros(11), r"y_pred must have shape"),
        (np.zeros((3, 11)), np.zeros((3, 11, 1)), r"y_pred must have shape"),
        (np.full((3, 11), 2), np.zeros((3, 11)), r"y_true must hold only 0 and 1"),
        (np.zeros((3, 11)), np.full((3, 11), 0.5), r"y_pred must hold only 0 and 1"),
        (np.zeros((3, 11)), np.full((3, 11), -1), r"y_pred must hold only 0 and 1"),
        (np.zeros((3, 11)), np.zeros((4, 11)), r"3 rows but y_pred has 4"),
        (np.zeros((0, 11)), np.zeros((0, 11)), r"zero rows"),
    ],
)
def test_input_validation(func, gold, pred, message):
    with pytest.raises(ValueError, match=message):
        func(gold, pred)


def test_check_label_matrix_returns_ints():
    out = check_label_matrix([[True] * 11], "labels")
    assert out.dtype == np.int64
    assert out.tolist() == [[1] * 11]


def test_ragged_rows_get_a_helpful_message():
    # a row of 3 values among rows of 11: the message should name the matrix and the expected shape,
    # not numpy's "inhomogeneous shape" error
    with pytest.raises(ValueError, match=r"y_pred must have shape \(n, 11\)"):
        macro_f1([[0] * 11, [0] * 11], [[0] * 11, [0] * 3])


def test_paired_bootstrap_of_a_macro_f1_difference():
    y, noisy = random_pair(400, seed=5)
    same = paired_bootstrap(y, noisy, noisy, n=200)
    assert same == {"diff": 0.0, "ci95": [0.0, 0.0]}
    better = paired_bootstrap(y, y, noisy, n=200)  # the gold labels against noisy predictions
    assert better["diff"] == pytest.approx(1.0 - macro_f1(y, noisy))
    assert 0 < better["ci95"][0] < better["diff"] < better["ci95"][1]
    assert paired_bootstrap(y, noisy, y, n=200)["diff"] == pytest.approx(-better["diff"])
    # each resample's figure is macro_f1 of the resampled rows (the same draws, scored in blocks)
    other = random_pair(400, seed=6)[1]
    rng = np.random.default_rng(3)
    draws = [rng.integers(0, 400, 400) for _ in range(300)]
    diffs = [macro_f1(y[i], other[i]) - macro_f1(y[i], noisy[i]) for i in draws]
    expected = np.percentile(diffs, [2.5, 97.5])
    assert paired_bootstrap(y, other, noisy, n=300, seed=3)["ci95"] == pytest.approx(list(expected), abs=1e-12)
