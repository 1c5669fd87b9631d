"""Trackers (``train.report_to``): each one's files read back with its own reader. TensorBoard's event files with
its ``EventAccumulator``, an MLflow ``file:`` store with ``MlflowClient``, and W&B's offline run files
(``WANDB_MODE=offline``) with its record protobufs: the held-out figures equal ``metrics.json``, the recipe is the
run's config, a cv's folds are grouped under it, and a resumed run goes on in the same tracker run. TF-IDF keeps
these fast; one slow MiniLM run puts the Trainer's loss and the held-out figures in one TensorBoard folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from gen_emotion.config.recipes import RecipeError, load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.evaluation.cv import run_cv
from gen_emotion.runs.pipeline import run_recipe

EVERY_TRACKER = "train.report_to=[tensorboard, mlflow, wandb]"
FAKE_KEY = "fake-wandb-key-0123456789abcdef0123456789abcdef"


@pytest.fixture
def stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An MLflow ``file:`` store in ``tmp_path`` and W&B offline, with an API key set that must go nowhere."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store for those who ask
    for name in ("MLFLOW_EXPERIMENT_NAME", "WANDB_DIR", "WANDB_PROJECT", "WANDB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    return tmp_path


def tensorboard_events(folder: Path) -> tuple[dict[str, float], dict[str, str]]:
    """The last value of each scalar and each text summary in a TensorBoard folder's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    texts = {tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    return scalars, texts


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run file (``run-ID.wandb``): a 7-byte header, then LevelDB-log blocks of 32 KiB whose
    records (4-byte checksum, 2-byte length, 1-byte type: full, first, middle, last) hold ``Record`` protobufs."""
    from wandb.proto.wandb_internal_pb2 import Record

    data, block, position, pending, records = path.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0:
            position += block - position % block
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_runs(folder: Path) -> list[dict[str, Any]]:
    """Each offline W&B run under ``folder/wandb``: id, name, group, job type, config and summary."""
    runs = []
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        run: dict[str, Any] = {"config": {}, "summary": {}}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                r = record.run
                run.update(id=r.run_id, name=r.display_name, group=r.run_group, job=r.job_type, project=r.project)
                run["config"].update({item.key: json.loads(item.value_json) for item in r.config.update})
            elif kind == "config":
                run["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
            elif kind == "summary":
                run["summary"].update(
                    {item.key: json.loads(item.value_json) for item in record.summary.update if item.key}
                )
        runs.append(run)
    return runs


def ids(folder: Path) -> dict[str, str]:
    return json.loads((folder / "tracking.json").read_text())


def held_out_figures(metrics: dict[str, Any]) -> dict[str, float]:
    """What a run logs, as ``metrics.json`` has it (a few of the per-label figures and thresholds)."""
    held = metrics["held_out"]
    return {
        "held_out/macro_f1": held["macro_f1"],
        "held_out/micro_f1": held["micro_f1"],
        "held_out/jaccard": held["jaccard"],
        "held_out/f1/joy": held["per_label"]["joy"]["f1"],
        "held_out/f1/trust": held["per_label"]["trust"]["f1"],
        "held_out/final_macro_f1": metrics["held_out_final_macro_f1"],
        "thresholds/anger": metrics["probabilities"]["thresholds"]["anger"],
    }


def no_secret_in(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_a_run_logs_its_held_out_figures_and_recipe_to_every_tracker(sample_dir: Path, stores: Path) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = stores / "tfidf-run"
    run_recipe(load_recipe("tfidf-logreg", [EVERY_TRACKER]), sample_dir, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = held_out_figures(metrics)

    scalars, texts = tensorboard_events(run_dir / "tensorboard")
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6), key  # TensorBoard keeps 32-bit floats
    assert "task: tfidf" in texts["recipe/text_summary"] and texts["decision/text_summary"] == metrics["decision"]

    run = MlflowClient().get_run(ids(run_dir)["mlflow"])
    assert run.info.run_name == "tfidf-run" and run.info.status == "FINISHED"
    assert {key: run.data.metrics[key] for key in expected} == expected
    assert run.data.params["recipe.task"] == "tfidf" and run.data.params["recipe.classifier.logreg_c"] == "4.0"
    assert run.data.tags["gen_emotion.decision"] == metrics["decision"]

    (wandb_run,) = wandb_runs(run_dir)
    assert (wandb_run["id"], wandb_run["name"], wandb_run["project"]) == (
        ids(run_dir)["wandb"],
        "tfidf-run",
        "gen-emotion",
    )
    assert {key: wandb_run["summary"][key] for key in expected} == expected
    assert wandb_run["config"]["recipe"]["task"] == "tfidf" and wandb_run["summary"]["decision"] == metrics["decision"]
    no_secret_in(run_dir)


def test_a_resumed_run_goes_on_in_its_tracker_run_and_a_restart_starts_another(sample_dir: Path, stores: Path):
    from mlflow.tracking import MlflowClient

    recipe, run_dir = load_recipe("tfidf-logreg", ["train.report_to=[mlflow, wandb]"]), stores / "again"
    run_recipe(recipe, sample_dir, run_dir)
    first = ids(run_dir)
    run_recipe(recipe, sample_dir, run_dir)  # the finished run, run again
    assert ids(run_dir) == first
    client = MlflowClient()
    experiment = client.get_experiment_by_name("gen-emotion").experiment_id
    assert [r.info.run_id for r in client.search_runs([experiment])] == [first["mlflow"]]
    # W&B offline cannot resume: the second part is a second offline folder of the same run id, which
    # `wandb sync --id ID` uploads as one run
    assert [r["id"] for r in wandb_runs(run_dir)] == [first["wandb"]] * 2
    run_recipe(recipe, sample_dir, run_dir, restart=True)
    assert ids(run_dir)["mlflow"] != first["mlflow"] and ids(run_dir)["wandb"] != first["wandb"]
    assert len(client.search_runs([experiment])) == 2


def test_a_cv_logs_one_tracker_run_per_fold_grouped_under_its_out_of_fold_figures(sample_dir: Path, stores: Path):
    from mlflow.tracking import MlflowClient

    cv_dir = stores / "cv-tfidf"
    run_cv(load_recipe("tfidf-logreg", [EVERY_TRACKER]), sample_dir, cv_dir, folds=2, rows=60)
    oof = json.loads((cv_dir / "oof_metrics.json").read_text())
    folds = [cv_dir / "folds" / f"fold-{k}" for k in range(2)]
    fold_f1 = [f["macro_f1_at_0_5"] for f in oof["per_fold"]]  # a fold's own decision: probabilities cut at 0.5

    client = MlflowClient()
    parent = client.get_run(ids(cv_dir)["mlflow"])
    assert parent.info.run_name == "cv-tfidf" and parent.data.metrics["out_of_fold/macro_f1"] == oof["macro_f1"]
    assert parent.data.metrics["out_of_fold/fold-1/macro_f1"] == oof["per_fold"][1]["macro_f1"]
    assert parent.data.metrics["thresholds/joy"] == oof["thresholds"]["joy"]
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        order_by=["attributes.run_name"],
    )
    assert [c.info.run_id for c in children] == [ids(folder)["mlflow"] for folder in folds]
    assert [c.info.run_name for c in children] == ["cv-tfidf-fold-0", "cv-tfidf-fold-1"]
    assert [c.data.metrics["held_out/macro_f1"] for c in children] == pytest.approx(fold_f1, abs=1e-12)

    scalars, _ = tensorboard_events(cv_dir / "tensorboard" / "out-of-fold")
    assert scalars["out_of_fold/macro_f1"] == pytest.approx(oof["macro_f1"], rel=1e-6)
    for k in range(2):
        scalars, _ = tensorboard_events(cv_dir / "tensorboard" / f"fold-{k}")
        assert scalars["held_out/macro_f1"] == pytest.approx(fold_f1[k], rel=1e-6)

    found = {run["name"]: run for folder in (cv_dir, *folds) for run in wandb_runs(folder)}
    assert sorted(found) == ["cv-tfidf", "cv-tfidf-fold-0", "cv-tfidf-fold-1"]
    assert {run["group"] for run in found.values()} == {"cv-tfidf"}
    assert [found[f"cv-tfidf-fold-{k}"]["job"] for k in range(2)] == ["fold", "fold"] and found["cv-tfidf"][
        "job"
    ] == "cv"
    assert found["cv-tfidf"]["summary"]["out_of_fold/macro_f1"] == oof["macro_f1"]
    no_secret_in(cv_dir)


def test_the_trainers_callbacks_find_each_tracker_run_in_the_environment(stores: Path) -> None:
    """What transformers' callbacks do while a fold trains here (a classifier's cv): W&B's and MLflow's start their
    runs from the environment alone, TensorBoard's writes where it says. Two folds in one process: each its own."""
    import os

    import mlflow
    import wandb
    from mlflow.tracking import MlflowClient

    from gen_emotion.training.tracking import open_cv, open_fold

    recipe, cv_dir = load_recipe("tfidf-logreg", [EVERY_TRACKER]), stores / "cv-here"
    cv_dir.mkdir()
    open_cv(recipe, cv_dir)
    for k in range(2):
        fold_dir = cv_dir / "folds" / f"fold-{k}"
        fold_dir.mkdir(parents=True)
        tracker = open_fold(recipe, cv_dir, fold_dir)
        with tracker.training():
            run = wandb.init(project=os.environ["WANDB_PROJECT"])  # as WandbCallback.setup
            assert (run.id, run.name, run.group, run.job_type) == (
                tracker.wandb_id,
                f"cv-here-fold-{k}",
                "cv-here",
                "fold",
            )
            run.log({"train/loss": 1.0 + k})
            with mlflow.start_run() as active:  # as MLflowCallback.setup
                assert active.info.run_id == tracker.mlflow_run_id
                mlflow.log_metric("loss", 1.0 + k, step=1)
            assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(cv_dir / "tensorboard" / f"fold-{k}")
        assert "WANDB_RUN_ID" not in os.environ and "MLFLOW_RUN_ID" not in os.environ
        tracker.finish({"held_out/macro_f1": 0.5 + k}, recipe, {"decision": "0.5"}, step=1)
        metrics = MlflowClient().get_run(tracker.mlflow_run_id).data.metrics
        assert metrics == {"loss": 1.0 + k, "held_out/macro_f1": 0.5 + k}  # the Trainer's run took the figures
        (found,) = wandb_runs(fold_dir)
        assert found["id"] == tracker.wandb_id and found["summary"]["held_out/macro_f1"] == 0.5 + k
        assert found["config"]["recipe"]["task"] == "tfidf"


def test_what_report_to_may_name_is_checked_once_before_anything_runs(sample_dir: Path, stores: Path, monkeypatch):
    with pytest.raises(
        RecipeError, match=r"train.report_to must be one of none, tensorboard, wandb, mlflow, got 'wandbb'"
    ):
        load_recipe("tfidf-logreg", ["train.report_to=[tensorboard, wandbb]"])
    with pytest.raises(RecipeError, match="train.report_to names none and a tracker"):
        load_recipe("tfidf-logreg", ["train.report_to=[none, mlflow]"])
    with pytest.raises(RecipeError, match="macro_f1 is for task: classify"):
        load_recipe("smollm2-135m-cpu", ["train.best_model_metric=macro_f1"])
    with pytest.raises(RecipeError, match="early_stopping_patience needs validation rows"):
        load_recipe("minilm-l6-cpu", ["train.early_stopping_patience=2"])  # its data.eval_rows is 0
    # an MLflow store this MLflow cannot open is one line, before the task trains
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchstore://user:secret@host/x")
    with pytest.raises(GenEmotionError, match=r"^MLflow cannot open its tracking store nosuchstore://\*\*\*@host/x \("):
        run_recipe(load_recipe("tfidf-logreg", ["train.report_to=mlflow"]), sample_dir, stores / "no-store")
    assert not (stores / "no-store" / "tfidf_logreg.pkl").exists()


@pytest.mark.slow
def test_minilm_loss_validation_and_held_out_figures_share_one_tensorboard_run(sample_dir: Path, tmp_path: Path):
    """The Trainer's loss and validation macro-F1 and the held-out figures, in one folder; the checkpoint kept is
    the one with the best validation macro-F1, and early stopping ends the training where the trajectory says."""
    overrides = [
        "train.report_to=tensorboard",
        "train.max_steps=6",
        "train.batch_size=8",
        "train.logging_steps=1",
        "train.eval_steps=1",
        "train.save_steps=1",
        "train.best_model_metric=macro_f1",
        "train.early_stopping_patience=2",
        "data.eval_rows=24",
        "data.max_train_rows=64",
        "classifier.max_length=32",
    ]
    run_dir = tmp_path / "minilm"
    run_recipe(load_recipe("minilm-l6-cpu", overrides), sample_dir, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    scalars, _ = tensorboard_events(run_dir / "tensorboard")
    assert "train/loss" in scalars and "eval/macro_f1" in scalars and "eval/loss" in scalars
    assert scalars["held_out/macro_f1"] == pytest.approx(metrics["held_out"]["macro_f1"], rel=1e-6)

    evaluations = [e for e in json.loads((run_dir / "train_log.json").read_text()) if "eval_macro_f1" in e]
    best, best_step, waited, stop = None, None, 0, 6
    for entry in evaluations:  # transformers' rule: better means strictly higher
        if best is None or entry["eval_macro_f1"] > best:
            best, best_step, waited = entry["eval_macro_f1"], entry["step"], 0
        else:
            waited += 1
            if waited == 2:
                stop = entry["step"]
                break
    training = json.loads((run_dir / "training.json").read_text())
    assert training["steps"] == stop and training["best_checkpoint"] == f"checkpoint-{best_step}"
    assert training["best_eval_macro_f1"] == max(e["eval_macro_f1"] for e in evaluations)
