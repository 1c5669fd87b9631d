"""The out-of-fold layout that cv and ensemble folders share: one writer (``write_out_of_fold``), one reader
(``load_member``), and the honest figure's seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS, NUM_LABELS
from gen_emotion.runs.folder import (
    FOLDER_METRICS,
    OOF_PROBS,
    TEST_PROBS,
    THRESHOLDS,
    OutOfFold,
    load_member,
    read_folder_metrics,
    read_thresholds,
    unique_names,
    write_folder_metrics,
    write_out_of_fold,
)
from gen_emotion.scoring.prediction_files import as_written
from gen_emotion.scoring.run_metrics import CvMetrics
from gen_emotion.scoring.thresholds import cross_validated_macro_f1, tune_thresholds


def layout(seed: int = 0, probabilities: bool = True, tuned: bool = True) -> OutOfFold:
    rng = np.random.default_rng(3)
    y = (rng.random((200, NUM_LABELS)) < 0.3).astype(np.int64)
    scores = np.clip(0.5 + 0.3 * (2 * y - 1) + rng.normal(0, 0.25, y.shape), 0, 1)
    test = rng.random((20, NUM_LABELS))
    thresholds = tune_thresholds(y, scores) if tuned else np.full(NUM_LABELS, 0.5)
    ids, test_ids = [f"r{i}" for i in range(len(y))], [f"t{i}" for i in range(len(test))]
    return OutOfFold(ids, y, scores, test_ids, test, thresholds, LABELS, "Id", probabilities, tuned, seed)


def finished(folder: Path, oof: OutOfFold, name: str = "run") -> CvMetrics:
    folder.mkdir(parents=True, exist_ok=True)
    metrics = CvMetrics(name=name, has_probabilities=oof.probabilities, seed=oof.seed, **write_out_of_fold(folder, oof))
    write_folder_metrics(folder, metrics)
    return metrics


def test_the_layout_reads_back_as_a_member(tmp_path: Path) -> None:
    oof = layout()
    metrics = finished(tmp_path / "cv", oof)
    member = load_member(tmp_path / "cv")
    assert member.ids == oof.ids and member.test_ids == oof.test_ids and member.id_column == "Id"
    assert np.array_equal(member.labels, oof.labels) and np.array_equal(member.oof_pred, oof.predictions)
    assert np.array_equal(member.test_pred, oof.test_predictions)
    assert member.has_probs and np.array_equal(member.oof_probs, as_written(oof.scores))
    assert member.metrics == metrics == read_folder_metrics(tmp_path / "cv")
    assert np.array_equal(read_thresholds(tmp_path / "cv", LABELS), oof.thresholds)


def test_the_honest_figure_is_seeded_by_the_layouts_seed(tmp_path: Path) -> None:
    figures = {seed: write_out_of_fold(tmp_path, layout(seed))["macro_f1_thresholds_cv"] for seed in (0, 7)}
    oof = layout()
    assert figures[7] == cross_validated_macro_f1(oof.labels, oof.scores, seed=7)
    assert figures[0] == cross_validated_macro_f1(oof.labels, oof.scores, seed=0) != figures[7]


def test_votes_cut_at_one_half_write_no_probabilities_and_no_honest_figure(tmp_path: Path) -> None:
    figures = write_out_of_fold(tmp_path, layout(probabilities=False, tuned=False))
    assert figures["macro_f1_thresholds_cv"] is None and set(figures["thresholds"].values()) == {0.5}
    assert not (tmp_path / OOF_PROBS).exists() and not (tmp_path / TEST_PROBS).exists()
    assert (tmp_path / THRESHOLDS).is_file()


def test_an_unfinished_folder_is_named(tmp_path: Path) -> None:
    finished(tmp_path / "cv", layout())
    (tmp_path / "cv" / FOLDER_METRICS).unlink()
    with pytest.raises(GenEmotionError, match=f"no {FOLDER_METRICS}; pass finished gen-emotion cv or ensemble"):
        load_member(tmp_path / "cv")


def test_members_of_one_name_are_told_apart_by_their_folders(tmp_path: Path) -> None:
    finished(tmp_path / "a", layout(), name="same")
    finished(tmp_path / "b", layout(), name="same")
    finished(tmp_path / "c", layout(), name="other")
    members = [load_member(tmp_path / k) for k in "abc"]
    assert unique_names(members) == ["same (a)", "same (b)", "other"]


def test_every_file_a_tfidf_run_cv_and_stacked_ensemble_write_is_declared(tmp_path):
    """``folder_files`` (the one list docs/commands.md follows) holds every file the commands write, where they
    write it."""
    from gen_emotion.cli.parser import main
    from gen_emotion.runs.folder import CV, ENSEMBLE, FOLD, RUN, folder_files

    run, cv, other, ensemble = (tmp_path / name for name in ("run", "cv", "other", "ensemble"))
    assert main(["run", "tfidf-logreg", "--out", str(run)]) == 0
    assert main(["cv", "tfidf-logreg", "--folds", "2", "--out", str(cv)]) == 0
    assert main(["cv", "tfidf-logreg", "classifier.logreg_c=1", "--folds", "2", "--out", str(other)]) == 0
    assert main(["ensemble", str(cv), str(other), "--stack", "--out", str(ensemble)]) == 0
    declared = folder_files()
    for kind, folder in ((RUN, run), (CV, cv), (FOLD, cv / "folds" / "fold-0"), (ENSEMBLE, ensemble)):
        written = {p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()}
        assert written, folder
        assert {name: declared.get(name) for name in written if kind not in declared.get(name, ())} == {}, kind
