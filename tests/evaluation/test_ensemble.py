"""Ensembles on synthetic run folders: probability averages, weights, votes, ID checks, the search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gen_emotion.cli.parser import main
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import NUM_LABELS
from gen_emotion.data.formats import read_label_file
from gen_emotion.evaluation.ensemble import align_members, combine, member_weights, run_ensemble, search_ensembles
from gen_emotion.runs.folder import FOLDER_METRICS, load_member
from gen_emotion.scoring.metrics import macro_f1, score
from gen_emotion.scoring.prediction_files import read_probabilities as read_probs
from gen_emotion.scoring.prediction_files import write_predictions
from gen_emotion.scoring.prediction_files import write_probabilities as write_probs
from gen_emotion.scoring.thresholds import (
    apply_thresholds,
    cross_validated_macro_f1,
    thresholds_to_dict,
    tune_thresholds,
)

N_ROWS, N_TEST = 400, 50


def gold(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((N_ROWS, NUM_LABELS)) < 0.3).astype(np.int64)


def noisy(y: np.ndarray, good: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities that track ``y`` closely on the ``good`` labels and are nearly noise elsewhere."""
    rng = np.random.default_rng(seed)
    signal = np.where(good, 0.45, 0.04)
    return np.clip(0.5 + signal * (2 * y - 1) + rng.normal(0, 0.2, y.shape), 0, 1)


def make_run(
    path: Path,
    name: str,
    y: np.ndarray,
    oof: np.ndarray,
    test: np.ndarray,
    ids: list[str] | None = None,
    with_probs: bool = True,
) -> Path:
    """A run folder in cv's layout from out-of-fold and test probabilities."""
    ids = ids or [f"r{i}" for i in range(len(y))]
    test_ids = [f"t{i}" for i in range(len(test))]
    thresholds = tune_thresholds(y, oof)
    oof_pred, test_pred = apply_thresholds(oof, thresholds), apply_thresholds(test, thresholds)
    path.mkdir(parents=True)
    if with_probs:
        write_probs(path / "oof_probs.csv", ids, oof)
        write_probs(path / "test_probs.csv", test_ids, test)
    write_predictions(path / "oof_labels.csv", ids, y)
    write_predictions(path / "oof_predictions.csv", ids, oof_pred)
    write_predictions(path / "test_predictions.csv", test_ids, test_pred)
    scores = score(y, oof_pred)
    metrics = {
        "name": name,
        "kind": "cv",
        "has_probabilities": with_probs,
        "folds": 5,
        **{k: scores[k] for k in ("macro_f1", "micro_f1", "jaccard", "rows", "per_label")},
        "thresholds": thresholds_to_dict(thresholds),
        "wall_s": 12.0,
        "peak_rss_mib": 300.0,
    }
    (path / FOLDER_METRICS).write_text(json.dumps(metrics))
    return path


@pytest.fixture
def complementary(tmp_path: Path) -> tuple[np.ndarray, Path, Path]:
    """Two runs: A is good on the first six labels, B on the last five."""
    y = gold()
    first = np.arange(NUM_LABELS) < 6
    test = np.random.default_rng(9).random((N_TEST, NUM_LABELS))
    a = make_run(tmp_path / "a", "model-a", y, noisy(y, first, 1), test)
    b = make_run(tmp_path / "b", "model-b", y, noisy(y, ~first, 2), test[::-1].copy())
    return y, a, b


def test_average_beats_each_complementary_member(complementary, tmp_path: Path) -> None:
    y, a, b = complementary
    metrics = run_ensemble([a, b], tmp_path / "ens")
    assert metrics.mode == "average" and not metrics.weighted
    _, pa = read_probs(a / "oof_probs.csv")
    _, pb = read_probs(b / "oof_probs.csv")
    _, combined = read_probs(tmp_path / "ens" / "oof_probs.csv")
    assert np.allclose(combined, (pa + pb) / 2, atol=2e-6)
    assert metrics.macro_f1 > max(m["macro_f1"] for m in metrics.members)
    assert [m["name"] for m in metrics.members] == ["model-a", "model-b"]
    thresholds = np.array(list(metrics.thresholds.values()))
    assert np.array_equal(
        read_label_file(tmp_path / "ens" / "oof_predictions.csv").labels, apply_thresholds(combined, thresholds)
    )
    for name in ("submission.csv", "test_predictions.csv", "test_probs.csv", "oof_labels.csv", "thresholds.json"):
        assert (tmp_path / "ens" / name).is_file(), name
    assert metrics.wall_s >= 24.0 and metrics.peak_rss_mib == 300.0


def test_weighted_average_uses_out_of_fold_macro_f1(complementary, tmp_path: Path) -> None:
    y, a, _ = complementary
    weak = make_run(
        tmp_path / "weak", "weak", y, np.random.default_rng(5).random(y.shape), np.zeros((N_TEST, NUM_LABELS))
    )
    metrics = run_ensemble([a, weak], tmp_path / "ens", weighted=True)
    f1a, f1w = (m["macro_f1"] for m in metrics.members)
    weights = [m["weight"] for m in metrics.members]
    assert weights == pytest.approx([f1a / (f1a + f1w), f1w / (f1a + f1w)])
    _, pa = read_probs(a / "oof_probs.csv")
    _, pw = read_probs(weak / "oof_probs.csv")
    _, combined = read_probs(tmp_path / "ens" / "oof_probs.csv")
    assert np.allclose(combined, weights[0] * pa + weights[1] * pw, atol=2e-6)


def test_vote_when_a_member_has_no_probabilities(complementary, tmp_path: Path) -> None:
    y, a, b = complementary
    test = np.random.default_rng(3).random((N_TEST, NUM_LABELS))
    hard = make_run(tmp_path / "hard", "generative", y, noisy(y, np.ones(NUM_LABELS, bool), 4), test, with_probs=False)
    metrics = run_ensemble([a, b, hard], tmp_path / "ens")
    assert metrics.mode == "vote" and metrics.has_probabilities is False
    assert not (tmp_path / "ens" / "oof_probs.csv").exists()
    votes = np.mean([read_label_file(p / "oof_predictions.csv").labels for p in (a, b, hard)], axis=0)
    thresholds = np.array(list(metrics.thresholds.values()))
    assert np.array_equal(
        read_label_file(tmp_path / "ens" / "oof_predictions.csv").labels, apply_thresholds(votes, thresholds)
    )
    assert metrics.macro_f1 == pytest.approx(macro_f1(y, apply_thresholds(votes, thresholds)))


def test_members_must_cover_the_same_ids(complementary, tmp_path: Path) -> None:
    y, a, _ = complementary
    other_ids = [f"x{i}" for i in range(N_ROWS)]
    c = make_run(
        tmp_path / "c", "c", y, noisy(y, np.ones(NUM_LABELS, bool), 6), np.zeros((N_TEST, NUM_LABELS)), other_ids
    )
    with pytest.raises(GenEmotionError, match="different training IDs"):
        run_ensemble([a, c], tmp_path / "ens")
    with pytest.raises(GenEmotionError, match="at least two"):
        run_ensemble([a], tmp_path / "ens")
    with pytest.raises(GenEmotionError, match="oof_metrics.json"):
        run_ensemble([a, tmp_path], tmp_path / "ens")
    flipped = y.copy()
    flipped[0] = 1 - flipped[0]
    d = make_run(
        tmp_path / "d", "d", flipped, noisy(flipped, np.ones(NUM_LABELS, bool), 7), np.zeros((N_TEST, NUM_LABELS))
    )
    with pytest.raises(GenEmotionError, match="gold labels"):
        run_ensemble([a, d], tmp_path / "ens")


def test_members_in_another_row_order_are_aligned(complementary, tmp_path: Path) -> None:
    y, a, b = complementary
    order = np.random.default_rng(8).permutation(N_ROWS)
    ids_a = [f"r{i}" for i in range(N_ROWS)]
    _, pb = read_probs(b / "oof_probs.csv")
    _, tb = read_probs(b / "test_probs.csv")
    shuffled = make_run(tmp_path / "b2", "model-b", y[order], pb[order], tb, [ids_a[i] for i in order])
    straight = run_ensemble([a, b], tmp_path / "e1")
    aligned = run_ensemble([a, shuffled], tmp_path / "e2")
    assert aligned.macro_f1 == pytest.approx(straight.macro_f1)


def test_an_ensemble_folder_is_a_member_and_the_search_picks_the_best(complementary, tmp_path: Path) -> None:
    y, a, b = complementary
    weak = make_run(
        tmp_path / "weak", "weak", y, np.random.default_rng(5).random(y.shape), np.zeros((N_TEST, NUM_LABELS))
    )
    best = search_ensembles([a, b, weak], tmp_path / "best")
    assert len(best.candidates) == 12  # {ab, aw, bw, abw} x {plain, weighted, stacked}
    assert sum(c["stacked"] for c in best.candidates) == 4
    assert best.macro_f1 == pytest.approx(max(c["macro_f1"] for c in best.candidates))
    member = load_member(tmp_path / "best")
    assert member.has_probs and member.metrics.kind == "ensemble"
    again = run_ensemble([tmp_path / "best", a], tmp_path / "again")
    assert again.rows == N_ROWS


def test_the_honest_figure_splits_with_the_first_members_seed(complementary, tmp_path: Path) -> None:
    y, a, b = complementary
    for folder, seed in ((a, 7), (b, 9)):  # as gen-emotion cv records its recipe's data.seed
        values = json.loads((folder / FOLDER_METRICS).read_text())
        (folder / FOLDER_METRICS).write_text(json.dumps({**values, "seed": seed}))
    metrics = run_ensemble([a, b], tmp_path / "ens")
    members = [load_member(a), load_member(b)]
    align_members(members)
    _, oof, _ = combine(members, member_weights(members, False))
    assert metrics.seed == 7 and json.loads((tmp_path / "ens" / FOLDER_METRICS).read_text())["seed"] == 7
    assert metrics.macro_f1_thresholds_cv == cross_validated_macro_f1(y, oof, seed=7)
    assert cross_validated_macro_f1(y, oof, seed=7) != cross_validated_macro_f1(y, oof, seed=0)
    again = run_ensemble([tmp_path / "ens", b], tmp_path / "again")  # an ensemble passes its seed on
    assert again.seed == 7


def test_command(complementary, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, a, b = complementary
    assert main(["ensemble", str(a), str(b), "--out", str(tmp_path / "ens"), "--weighted"]) == 0
    assert "ensemble (average)" in capsys.readouterr().out
    assert main(["ensemble", str(a), "--out", str(tmp_path / "one")]) == 2
    assert "at least two" in capsys.readouterr().err


def test_stacking_learns_what_an_average_cannot(complementary, tmp_path: Path) -> None:
    """B's probabilities are inverted on its good labels: averaging cancels A's signal there, a stacked
    logistic regression turns B's into a signal (negative weights) and beats the average and A."""
    y, a, _ = complementary
    test = np.random.default_rng(4).random((N_TEST, NUM_LABELS))
    inverted = make_run(tmp_path / "inv", "inverted", y, 1 - noisy(y, np.ones(NUM_LABELS, bool), 6), test)
    average = run_ensemble([a, inverted], tmp_path / "avg")
    stacked = run_ensemble([a, inverted], tmp_path / "stack", stacked=True)
    assert stacked.mode == "stack" and stacked.name.endswith(", stacked)")
    assert stacked.macro_f1_thresholds_cv > average.macro_f1_thresholds_cv + 0.1
    assert stacked.macro_f1 > max(m["macro_f1"] for m in stacked.members)
    ids, oof = read_probs(tmp_path / "stack" / "oof_probs.csv")
    assert ids == [f"r{i}" for i in range(N_ROWS)] and oof.shape == (N_ROWS, NUM_LABELS)
    assert read_probs(tmp_path / "stack" / "test_probs.csv")[1].shape == (N_TEST, NUM_LABELS)


def test_stacking_needs_probabilities_and_excludes_weighting(complementary, tmp_path: Path) -> None:
    y, a, b = complementary
    hard = make_run(
        tmp_path / "hard", "hard", y, noisy(y, np.ones(NUM_LABELS, bool), 4), np.zeros((N_TEST, 11)), with_probs=False
    )
    with pytest.raises(GenEmotionError, match="stacking needs probabilities"):
        run_ensemble([a, hard], tmp_path / "x", stacked=True)
    with pytest.raises(GenEmotionError, match="not both"):
        run_ensemble([a, b], tmp_path / "y", weighted=True, stacked=True)
