"""Threshold tuning on synthetic probabilities with a known optimum."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import NUM_LABELS
from gen_emotion.scoring.metrics import macro_f1
from gen_emotion.scoring.thresholds import (
    apply_thresholds,
    candidate_thresholds,
    cross_validated_macro_f1,
    f1_at_thresholds,
    thresholds_from_dict,
    thresholds_to_dict,
    tune_thresholds,
)


def test_separable_labels_get_a_threshold_inside_the_gap():
    # Label j's positives score in [0.2 + 0.05j, 0.25 + 0.05j], negatives below 0.15: the only
    # perfect thresholds lie in the gap (0.15, 0.2 + 0.05j], far from the default 0.5.
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random((n, NUM_LABELS)) < 0.3).astype(int)
    low = np.arange(NUM_LABELS) * 0.05 + 0.2
    probs = np.where(y == 1, low + rng.random((n, NUM_LABELS)) * 0.05, rng.random((n, NUM_LABELS)) * 0.15)
    t = tune_thresholds(y, probs)
    assert ((t > 0.15) & (t <= low + 1e-9)).all(), t
    assert macro_f1(y, apply_thresholds(probs, t)) == 1.0
    assert macro_f1(y, apply_thresholds(probs, np.full(NUM_LABELS, 0.5))) < 0.8


def test_tuned_threshold_is_the_brute_force_optimum_per_label():
    rng = np.random.default_rng(1)
    n = 300
    y = (rng.random((n, NUM_LABELS)) < 0.2).astype(int)
    probs = np.clip(0.35 * y + rng.random((n, NUM_LABELS)) * 0.7, 0, 1)
    t = tune_thresholds(y, probs)
    for j in range(NUM_LABELS):
        grid = np.unique(np.concatenate([np.linspace(0, 1, 201), probs[:, j]]))
        best = max(f1_score(y[:, j], (probs[:, j] >= g).astype(int), zero_division=0) for g in grid)
        got = f1_score(y[:, j], (probs[:, j] >= t[j]).astype(int), zero_division=0)
        assert got == pytest.approx(best, abs=1e-12)


def test_vectorised_f1_matches_scikit_learn():
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(int)
    scores = np.round(rng.random(200), 2)  # ties included
    grid = np.linspace(0, 1, 57)
    expected = [f1_score(y, (scores >= g).astype(int), zero_division=0) for g in grid]
    assert np.allclose(f1_at_thresholds(y, scores, grid), expected)


def test_sampled_probabilities_with_eighths():
    # Probabilities from 8 samples take values k/8; candidates are the midpoints between them.
    scores = np.array([0, 1, 2, 4, 8]) / 8
    c = candidate_thresholds(scores)
    assert np.allclose(c[1:-1], [1 / 16, 3 / 16, 3 / 8, 3 / 4])
    assert c[0] < 0 + 1e-5 and c[-1] == 1.0


def test_label_without_positives_keeps_default():
    y = np.zeros((20, NUM_LABELS), dtype=int)
    y[:5, 0] = 1
    probs = np.full((20, NUM_LABELS), 0.3)
    probs[:5, 0] = 0.9
    t = tune_thresholds(y, probs, default=0.5)
    assert t[1:].tolist() == [0.5] * (NUM_LABELS - 1)
    assert 0.3 < t[0] <= 0.9


def test_cross_validated_estimate_is_not_above_in_sample_on_noise():
    # Pure noise: in-sample tuning overfits, the cross-validated estimate must not be higher.
    rng = np.random.default_rng(2)
    y = (rng.random((300, NUM_LABELS)) < 0.15).astype(int)
    probs = rng.random((300, NUM_LABELS))
    in_sample = macro_f1(y, apply_thresholds(probs, tune_thresholds(y, probs)))
    assert cross_validated_macro_f1(y, probs, folds=5, seed=0) < in_sample


def test_fewer_held_out_rows_than_folds_are_scored_one_row_a_fold():
    # a tiny validation split (3 rows) with 5 folds asked for: each row scored with thresholds tuned on the others
    y = np.array([[1] + [0] * (NUM_LABELS - 1), [0, 1] + [0] * (NUM_LABELS - 2), [1, 1] + [0] * (NUM_LABELS - 2)])
    probs = np.where(y == 1, 0.8, 0.2)  # separable: thresholds tuned on any two rows keep every row right
    assert cross_validated_macro_f1(y, probs, folds=5, seed=0) == macro_f1(y, y)
    with pytest.raises(GenEmotionError, match="at least 2 held-out rows"):
        cross_validated_macro_f1(y[:1], probs[:1])


def test_validation_errors():
    y = np.zeros((4, NUM_LABELS), dtype=int)
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        tune_thresholds(y, np.full((4, NUM_LABELS), 1.5))
    with pytest.raises(ValueError, match="shape"):
        apply_thresholds(np.zeros((4, 3)), np.zeros(NUM_LABELS))
    with pytest.raises(ValueError, match="11 values"):
        apply_thresholds(np.zeros((4, NUM_LABELS)), np.zeros(3))
    with pytest.raises(ValueError, match="rows"):
        tune_thresholds(y, np.zeros((5, NUM_LABELS)))


def test_dict_round_trip_and_missing_label():
    t = np.linspace(0.1, 0.6, NUM_LABELS)
    assert np.allclose(thresholds_from_dict(thresholds_to_dict(t)), t)
    values = thresholds_to_dict(t)
    values.pop("trust")
    with pytest.raises(ValueError, match="trust"):
        thresholds_from_dict(values)


def test_choose_thresholds_keeps_tuned_ones_only_when_they_beat_the_baseline() -> None:
    from gen_emotion.scoring.thresholds import choose_thresholds

    rng = np.random.default_rng(3)
    y = (rng.random((300, NUM_LABELS)) < 0.2).astype(int)
    probs = np.clip(0.15 + 0.5 * y + rng.normal(0, 0.15, y.shape), 0, 1)  # informative, but 0.5 cuts badly
    honest = cross_validated_macro_f1(y, probs, seed=7)
    choice = choose_thresholds(y, probs, baseline_macro_f1=honest - 0.01, seed=7)
    assert choice.use and choice.cross_validated == honest
    assert np.array_equal(choice.thresholds, tune_thresholds(y, probs))
    assert choice.in_sample == macro_f1(y, apply_thresholds(probs, choice.thresholds)) >= honest
    assert not choose_thresholds(y, probs, baseline_macro_f1=honest, seed=7).use
