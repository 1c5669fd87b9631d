"""What the trainers share: the rows kept aside, and (slow) a training over two processes, as ``accelerate
launch`` runs it on several GPUs, here ``torchrun`` on the CPU: one adapter, one ``training.json``, the checkpoints
deleted, and only the main process logging and writing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, SAMPLE_DIR

from gen_emotion.config.recipes import load_recipe
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.runs.folder import prepare_run_dir
from gen_emotion.training.trainers import (
    disk_full,
    last_whole_checkpoint,
    split_train_eval,
    trainer_arguments,
    training_callbacks,
)


def test_rows_kept_aside_are_seeded_disjoint_and_capped():
    recipe = load_recipe("recipes/smollm2-135m-cpu.yaml", ["data.eval_rows=10", "data.max_train_rows=50"])
    train, held = split_train_eval(200, recipe.data, recipe.train.seed)
    again = split_train_eval(200, recipe.data, recipe.train.seed)
    assert np.array_equal(train, again[0]) and np.array_equal(held, again[1])
    assert len(held) == 10 and len(train) == 50 and not set(train) & set(held)
    with pytest.raises(GenEmotionError, match="no training rows left"):
        split_train_eval(0, recipe.data, recipe.train.seed)


def test_the_checkpoint_kept_and_early_stopping_follow_the_recipe(tmp_path):
    from transformers import EarlyStoppingCallback, EvalPrediction

    from gen_emotion.training.classify import validation_metrics

    loss = load_recipe("minilm-l6-cpu", ["data.eval_rows=20"]).train
    f1 = load_recipe("minilm-l6-cpu", ["data.eval_rows=20", "train.best_model_metric=macro_f1"]).train
    chosen = {k: trainer_arguments(t, tmp_path, has_eval=True) for k, t in (("loss", loss), ("f1", f1))}
    assert (chosen["loss"]["metric_for_best_model"], chosen["loss"]["greater_is_better"]) == ("eval_loss", False)
    assert (chosen["f1"]["metric_for_best_model"], chosen["f1"]["greater_is_better"]) == ("eval_macro_f1", True)
    assert trainer_arguments(f1, tmp_path, has_eval=False)["load_best_model_at_end"] is False
    assert training_callbacks(f1, has_eval=True) == []
    patient = load_recipe("minilm-l6-cpu", ["data.eval_rows=20", "train.early_stopping_patience=3"]).train
    (callback,) = training_callbacks(patient, has_eval=True)
    assert isinstance(callback, EarlyStoppingCallback) and callback.early_stopping_patience == 3
    assert training_callbacks(patient, has_eval=False) == []
    # the validation macro-F1: logits cut at 0 (a probability of 0.5), two labels here: F1 1 and 0
    logits, labels = np.array([[2.0, -1.0], [-3.0, 0.5]]), np.array([[1.0, 1.0], [0.0, 0.0]])
    assert validation_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == {"macro_f1": 0.5}


def test_a_write_that_failed_for_want_of_room_is_told_from_other_failures(tmp_path):
    import errno

    import torch
    from safetensors.torch import save_file

    assert disk_full(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert disk_full(OSError(errno.EFBIG, "File too large")) == "File too large"
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None and disk_full(ValueError("x")) is None
    with pytest.raises(Exception) as missing:  # safetensors' own error type, with the OS's message inside
        save_file({"w": torch.zeros(2)}, str(tmp_path / "no-such-folder" / "w.safetensors"))
    assert type(missing.value).__name__ == "SafetensorError" and disk_full(missing.value) is None


def test_a_checkpoint_cut_mid_save_is_skipped_for_the_one_before_it(tmp_path, caplog):
    """The Trainer writes trainer_state.json last; a checkpoint without a whole one was cut mid-save."""
    assert last_whole_checkpoint(tmp_path / "none") is None
    for step, state in ((2, '{"global_step": 2}'), (10, '{"global_step": 10}'), (12, '{"global_st'), (14, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"weights")
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-99.tmp").mkdir()  # not a checkpoint the Trainer names
    assert last_whole_checkpoint(tmp_path) == tmp_path / "checkpoint-10"  # by step, not by name: 10 after 2
    assert "checkpoint-14 was cut mid-save" in caplog.text and "checkpoint-12 was cut mid-save" in caplog.text


@pytest.mark.slow
def test_two_processes_train_one_adapter_and_only_the_main_one_writes(llama_instruct_dir, tmp_path: Path):
    run_dir = tmp_path / "run"
    overrides = [
        f"model.name={llama_instruct_dir}",
        "train.max_steps=4",
        "train.batch_size=4",
        "train.eval_steps=2",
        "train.save_steps=2",
        "train.bf16=false",
        "data.eval_rows=8",
    ]
    prepare_run_dir(load_recipe("recipes/smollm2-135m-cpu.yaml", overrides), run_dir)
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "-m", "gen_emotion.runs.worker", "fit"]
    command += ["--task", "gen_emotion.tasks.generate:GenerateTask", "--run-dir", str(run_dir), "--out", str(run_dir)]
    command += ["--data", str(SAMPLE_DIR), "--folds", "10", "--fold", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "training.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    assert (run_dir / "adapter" / "adapter_config.json").is_file() and (run_dir / "train_log.json").is_file()
    assert not (run_dir / "checkpoints").exists()
    log = (run_dir / "run.log").read_text()
    assert log.count("fit step of fold") == 1 and log.count("training done") == 1  # the main process only
