"""The comparison report over real cv runs of the TF-IDF baseline on the sample (seconds)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.evaluation.ensemble import run_ensemble
from gen_emotion.evaluation.report import F1_CHART, INDEX, MARKDOWN, SUPPORT_CHART, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    word = load_recipe("recipes/tfidf-logreg.yaml", ["classifier.char_ngrams=false", "name=tfidf-word"])
    both = load_recipe("recipes/tfidf-logreg.yaml")
    run_cv(word, None, root / "word", folds=3)
    run_cv(both, None, root / "both", folds=3)
    run_ensemble([root / "word", root / "both"], root / "ensemble")
    return [root / "word", root / "both", root / "ensemble"]


def test_writes_charts_tables_and_page(runs: list[Path], tmp_path: Path) -> None:
    paths = write_report(runs, tmp_path / "report")
    for name in (F1_CHART, SUPPORT_CHART, MARKDOWN, INDEX):
        assert paths[name].is_file() and paths[name].stat().st_size > 0, name
    for chart in (F1_CHART, SUPPORT_CHART):
        assert paths[chart].read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(paths[chart])
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 400


def test_markdown_has_every_label_run_time_and_memory(runs: list[Path], tmp_path: Path) -> None:
    text = write_report(runs, tmp_path / "report")[MARKDOWN].read_text()
    for label in LABELS:
        assert f"| {label} |" in text
    for name in ("tfidf-word", "tfidf-logreg", "ensemble(tfidf-word+tfidf-logreg)"):
        assert name in text
    assert "wall time" in text and "peak memory" in text and " MiB |" in text
    assert f"![per-label F1]({F1_CHART})" in text


def test_index_shows_the_charts(runs: list[Path], tmp_path: Path) -> None:
    page = write_report(runs, tmp_path / "report")[INDEX].read_text()
    assert page.startswith("<!doctype html>")
    assert f'<img src="{F1_CHART}"' in page and f'<img src="{SUPPORT_CHART}"' in page
    assert page.count("<table>") == 2 and "tfidf-word" in page


def test_refuses_runs_of_other_data(runs: list[Path], tmp_path: Path) -> None:
    small = tmp_path / "small"
    run_cv(load_recipe("recipes/tfidf-logreg.yaml"), None, small, folds=2, rows=60)
    with pytest.raises(GenEmotionError, match="different numbers of training rows"):
        write_report([runs[0], small], tmp_path / "report")
    with pytest.raises(GenEmotionError, match="oof_metrics.json"):
        write_report([tmp_path], tmp_path / "report")


def test_command(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    assert str(out / INDEX) in capsys.readouterr().out


def test_training_loss_curves_come_from_the_folds_logs(tmp_path):
    import json
    import shutil

    from gen_emotion.cli.parser import main
    from gen_emotion.evaluation.report import LOSS_CHART, loss_curves

    cv = tmp_path / "cv"
    assert main(["cv", "recipes/tfidf-logreg.yaml", "--folds", "2", "--rows", "60", "--out", str(cv)]) == 0
    assert loss_curves(cv) == []  # TF-IDF trains no steps
    written = main(["report", str(cv), "--out", str(tmp_path / "plain")])
    assert written == 0 and not (tmp_path / "plain" / LOSS_CHART).exists()
    logged = tmp_path / "logged"
    shutil.copytree(cv, logged)
    history = [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.5}, {"step": 20, "eval_loss": 1.7}]
    (logged / "folds" / "fold-0" / "train_log.json").write_text(json.dumps(history))
    (logged / "folds" / "fold-1" / "train_log.json").write_text("not json")  # damaged: skipped, not fatal
    assert loss_curves(logged) == [([10, 20], [2.0, 1.5])]
    assert main(["report", str(cv), str(logged), "--out", str(tmp_path / "both")]) == 0
    assert (tmp_path / "both" / LOSS_CHART).is_file()
    assert LOSS_CHART in (tmp_path / "both" / "index.html").read_text()
