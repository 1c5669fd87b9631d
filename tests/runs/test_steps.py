"""One path for every task (``steps.fit_predict``), tested fast with a fake generation task (``fake_tasks``):
training and generation each run in a process of their own, resume skips what is saved, and ``run``, ``cv``
and ``predict`` write their files. The real models run the same path in ``test_pipeline.py`` (slow)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE_DIR
from fake_tasks import FakeGenerateTask

from gen_emotion.config.recipes import data_source, load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.labels import LABELS
from gen_emotion.data.formats import read_label_file, read_test
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.generation.parsing import parse
from gen_emotion.runs.folder import load_run_recipe
from gen_emotion.runs.pipeline import run_recipe
from gen_emotion.runs.steps import Fold, StepFailed, fit_predict
from gen_emotion.scoring.prediction_files import read_probabilities
from gen_emotion.serving.predict_file import predict_file
from gen_emotion.serving.predictor import PredictSettings
from gen_emotion.tasks.base import TASKS, get_task

RECIPE = "recipes/smollm2-135m-cpu.yaml"


def steps(out_dir: Path) -> list[dict]:
    path = out_dir / "steps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_training_and_generation_run_in_processes_of_their_own(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE)
    metrics = run_recipe(recipe, SAMPLE_DIR, tmp_path / "run", task=FakeGenerateTask())
    record = steps(tmp_path / "run")
    fit = [r for r in record if r["step"] == "fit"]
    generation = [r for r in record if r["step"] in ("predict", "generator loaded")]
    assert len(fit) == 1 and fit[0]["trainer_loaded"]
    assert generation and all(not r["trainer_loaded"] for r in generation)  # the engine's process never trained
    pids = {r["pid"] for r in fit} | {r["pid"] for r in generation}
    assert len(pids) == 2 and os.getpid() not in pids  # two processes, neither of them this one
    assert metrics.held_out["rows"] == 30 and metrics.test_rows == 80
    log = (tmp_path / "run" / "run.log").read_text()
    assert "predict step: trainer modules loaded in this process: none" in log


def test_run_writes_every_file_and_one_metrics_layout(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, ["generate.probabilities=true", "generate.num_samples=4"])
    run_dir = tmp_path / "run"
    metrics = run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    for name in ("recipe.yaml", "training.json", "val_predictions.csv", "test_predictions.csv", "submission.csv"):
        assert (run_dir / name).is_file(), name
    for name in ("val_probs.csv", "test_probs.csv", "thresholds.json", "metrics.json", "run.log"):
        assert (run_dir / name).is_file(), name
    assert set(metrics.to_dict()) == set(json.loads((tmp_path / "run" / "metrics.json").read_text()))
    assert metrics.outputs["canonical_share"] == 1.0
    assert metrics.probabilities["base"] == "greedy"
    assert metrics.decision in ("greedy", "thresholds")
    submission = read_label_file(run_dir / "submission.csv")
    assert submission.ids == read_test(SAMPLE_DIR / "test.csv").ids
    # a classifier run writes the same keys (the one layout)
    tfidf = run_recipe(load_recipe("recipes/tfidf-logreg.yaml"), SAMPLE_DIR, tmp_path / "tfidf")
    assert set(tfidf.to_dict()) == set(metrics.to_dict())
    assert tfidf.outputs is None and tfidf.probabilities["base"] == "0.5"


def test_branch_probabilities_come_with_the_greedy_pass_and_resume(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, ["generate.probabilities=true", "generate.probability_source=branches"])
    run_dir = tmp_path / "run"
    metrics = run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    assert "greedy output" in metrics.probabilities["method"]
    shards = run_dir / "shards" / "val"
    assert sorted(p.name for p in shards.iterdir()) == ["greedy-branches"]  # one pass: no greedy, no samples
    ids, probs = read_probabilities(run_dir / "val_probs.csv", LABELS)
    with (run_dir / "val_predictions.csv").open(newline="", encoding="utf-8") as handle:
        outputs = [row["output"] for row in csv.DictReader(handle)]
    greedy = np.stack([parse(output) for output in outputs])
    assert (probs[greedy == 1] >= 0.7 - 1e-6).all()  # a written label has at least its slot's 0.7
    assert 0 < (probs[greedy == 0] > 0).sum() < (greedy == 0).sum()  # some others got the 0.3 branch
    first = (run_dir / "val_probs.csv").read_text()
    (shards / "greedy-branches" / "shard-00000.json").unlink()
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    assert (run_dir / "val_probs.csv").read_text() == first
    # the thresholds were tuned on branch probabilities: predict does not swap in sampled ones
    with pytest.raises(GenEmotionError, match="tuned on branches probabilities"):
        settings = PredictSettings(overrides=("generate.probability_source=samples",))
        predict_file(run_dir, SAMPLE_DIR / "test.csv", tmp_path / "p.csv", settings)


def test_a_run_written_before_branches_existed_keeps_its_sampled_probabilities(tmp_path: Path) -> None:
    overrides = ["generate.probabilities=true", "generate.probability_source=samples", "generate.num_samples=4"]
    recipe = load_recipe(RECIPE, overrides)
    run_dir = tmp_path / "run"
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    assert sorted(p.name for p in (run_dir / "shards" / "val").iterdir()) == ["greedy", "samples"]
    saved = (run_dir / "recipe.yaml").read_text()
    (run_dir / "recipe.yaml").write_text(
        "".join(line for line in saved.splitlines(True) if "probability_source" not in line)
    )
    assert load_run_recipe(run_dir).generate.probability_source == "samples"
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())  # the same recipe: it resumes


def test_rerun_trains_nothing_and_generates_only_missing_shards(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, ["generate.shard_size=32", "generate.probabilities=false"])
    run_dir = tmp_path / "run"
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    first = (run_dir / "test_predictions.csv").read_text()
    assert [r["step"] for r in steps(run_dir)].count("fit") == 1
    (run_dir / "shards" / "test" / "greedy" / "shard-00001.json").unlink()
    before = len(steps(run_dir))
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    again = steps(run_dir)[before:]
    assert [r["step"] for r in again] == ["predict", "generator loaded"]  # no fit, one predict process
    assert (run_dir / "test_predictions.csv").read_text() == first
    before = len(steps(run_dir))
    run_recipe(recipe, SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    assert steps(run_dir)[before:] == []  # everything saved: no step process at all


def test_a_failing_step_is_one_line_from_its_process(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, ["description=fail to train"])
    with pytest.raises(StepFailed, match="^fake trainer: refused to train, as asked$"):
        run_recipe(recipe, SAMPLE_DIR, tmp_path / "run", task=FakeGenerateTask())


def test_cv_takes_the_same_path_fold_by_fold_and_drops_models(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE, ["generate.probabilities=true", "generate.num_samples=4"])
    metrics = run_cv(recipe, SAMPLE_DIR, tmp_path / "cv", folds=3, keep_models=False, task=FakeGenerateTask())
    assert metrics.folds == 3 and metrics.has_probabilities
    for k in range(3):
        fold_dir = tmp_path / "cv" / "folds" / f"fold-{k}"
        assert (fold_dir / "fold.json").is_file()
        assert not (fold_dir / "adapter").exists() and not (fold_dir / "shards").exists()
        record = steps(fold_dir)
        assert {r["pid"] for r in record if r["step"] == "fit"}.isdisjoint(
            {r["pid"] for r in record if r["step"] == "predict"}
        )
    oof = read_label_file(tmp_path / "cv" / "oof_predictions.csv")
    assert len(oof.ids) == 300


def test_predict_file_reads_the_run_and_resumes_from_its_shards(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_recipe(load_recipe(RECIPE), SAMPLE_DIR, run_dir, task=FakeGenerateTask())
    texts = tmp_path / "mine.txt"
    texts.write_text("I am so happy\n\nso angry and sad\n", encoding="utf-8")
    out = tmp_path / "mine.csv"
    # predict_file goes through the registry: the run's recipe names the real task, whose adapter is fake here;
    # the fake's shards are what predict reads back, so put the fake in the registry for this call
    TASKS["generate"], real = FakeGenerateTask, TASKS["generate"]
    try:
        result = predict_file(run_dir, texts, out)
    finally:
        TASKS["generate"] = real
    assert result["rows"] == 3
    predicted = read_label_file(out)
    assert predicted.ids == ["1", "2", "3"]
    with out.open(newline="", encoding="utf-8") as handle:
        assert [row["output"] for row in csv.DictReader(handle)] == ["joy", "none", "anger, sadness"]
    # the run's own decision: its tuned thresholds over the branch probabilities of the same greedy pass
    assert json.loads((run_dir / "metrics.json").read_text())["decision"] == "thresholds"
    thresholds = json.loads((run_dir / "thresholds.json").read_text())
    _, probs = read_probabilities(tmp_path / "mine_probs.csv", LABELS)
    assert np.array_equal(predicted.labels, (probs >= [thresholds[label] for label in LABELS]).astype(int))


def test_fold_is_rebuilt_identically_in_a_step_process(tmp_path: Path) -> None:
    recipe = load_recipe(RECIPE)
    fold = Fold.load(data_source(recipe, SAMPLE_DIR), recipe.data.folds, 3, recipe.data.seed)
    again = Fold.load(data_source(recipe, SAMPLE_DIR), recipe.data.folds, 3, recipe.data.seed)
    assert fold.held_out.ids == again.held_out.ids and fold.train.ids == again.train.ids
    assert set(fold.held_out.ids).isdisjoint(fold.train.ids)
    with pytest.raises(GenEmotionError, match="fold must be in 0..9"):
        Fold.load(data_source(recipe, SAMPLE_DIR), 10, 10, 42)


def test_in_process_tasks_return_their_predictions(tmp_path: Path) -> None:
    recipe = load_recipe("recipes/tfidf-logreg.yaml")
    fold = Fold.load(data_source(recipe, SAMPLE_DIR), 5, 0, 42)
    result = fit_predict(recipe, fold, tmp_path, tmp_path)
    assert result.val.probs.shape == (len(fold.val_idx), 11) and result.test.ids == fold.test.ids
    assert get_task("tfidf").is_fitted(tmp_path) and not get_task("tfidf").isolated(recipe)
    with pytest.raises(GenEmotionError, match="unknown task"):
        get_task("regress")


def test_training_on_several_gpus_runs_under_accelerate_launch():
    from gen_emotion.models.hardware import accelerate_config_path
    from gen_emotion.runs.steps import WORKER, Launcher

    one = Launcher().command("fit")
    assert one[1:] == ["-m", WORKER]
    several = Launcher(gpus=4, accelerate_config="fsdp").command("fit")
    assert several[:2] in (["accelerate", "launch"], [str(Path(sys.executable).with_name("accelerate")), "launch"])
    assert several[several.index("--config_file") + 1] == str(accelerate_config_path("fsdp"))
    assert several[several.index("--num_processes") + 1] == "4" and several[-2:] == ["-m", WORKER]
    assert Launcher(gpus=4).command("predict")[1:] == ["-m", WORKER]  # generation: one process (vLLM splits it)


def test_training_on_one_gpu_sees_only_the_first_visible_one(tmp_path: Path, monkeypatch) -> None:
    from gen_emotion.runs.steps import Launcher

    one, several = Launcher(), Launcher(gpus=2)
    assert one.environment("fit", {"PATH": "/bin"}) == {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0"}
    assert one.environment("fit", {"CUDA_VISIBLE_DEVICES": "3,1"})["CUDA_VISIBLE_DEVICES"] == "3"
    assert one.environment("fit", {"CUDA_VISIBLE_DEVICES": "GPU-8e1f,GPU-77aa"})["CUDA_VISIBLE_DEVICES"] == "GPU-8e1f"
    for hidden in ("", "-1"):  # no GPU at all stays so
        assert one.environment("fit", {"CUDA_VISIBLE_DEVICES": hidden})["CUDA_VISIBLE_DEVICES"] == hidden
    # generation, and training under accelerate launch (one process per GPU), see what they were given
    assert one.environment("predict", {"CUDA_VISIBLE_DEVICES": "3,1"})["CUDA_VISIBLE_DEVICES"] == "3,1"
    assert several.environment("fit", {"CUDA_VISIBLE_DEVICES": "3,1"})["CUDA_VISIBLE_DEVICES"] == "3,1"
    # the fit step's own process is started so, and its log says which GPU it trains on
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    run_recipe(load_recipe(RECIPE), SAMPLE_DIR, tmp_path / "run", task=FakeGenerateTask())
    log = (tmp_path / "run" / "run.log").read_text()
    assert "fit step: " in log and "(CUDA_VISIBLE_DEVICES=5)" in log and "CUDA_VISIBLE_DEVICES=5,7" not in log
