"""What the SFT trainer (``train``) and the classification-head trainer (``classify``) share: the rows kept
aside for validation, the ``TrainingArguments`` a recipe sets, and the ending of a training run (resume from
the last checkpoint, save the chosen weights, ``train_log.json``, ``training.json``, delete the checkpoints).

Under ``accelerate launch`` (several GPUs) every process trains, but only the main process writes run files
or deletes checkpoints, and only once every process has saved its part of the model.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import DataArgs, TrainArgs
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.core.files import read_json, write_json, write_text
from gen_emotion.models.hardware import peak_memory
from gen_emotion.models.loading import bf16_autocast, cuda_available

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
TRAINING_SUMMARY = "training.json"
TRAIN_LOG = "train_log.json"


def split_train_eval(n_rows: int, data: DataArgs, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices, seeded by ``seed`` (``train.seed``), of the rows to train on and the rows kept for validation loss."""
    order = np.random.default_rng(seed).permutation(n_rows)
    n_eval = min(data.eval_rows, max(n_rows - 1, 0))
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    if data.max_train_rows is not None:
        train_idx = train_idx[: data.max_train_rows]
    if len(train_idx) == 0:
        raise GenEmotionError("no training rows left after setting aside data.eval_rows")
    return np.sort(train_idx), np.sort(eval_idx)


def trainer_arguments(t: TrainArgs, output_dir: Path, has_eval: bool) -> dict[str, Any]:
    """The ``TrainingArguments`` keywords that the recipe's ``train`` section ``t`` sets, shared by the SFT
    and classification-head trainers; with validation, the best checkpoint by ``train.best_model_metric`` is
    kept (the lowest loss, or the highest macro-F1). The trackers find their runs in the environment
    (``tracking.TrackerRun.training``)."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_steps,
        "weight_decay": t.weight_decay,
        "optim": t.optim,
        "bf16": bf16_autocast(t.bf16),
        "use_cpu": not cuda_available(),
        "gradient_checkpointing": t.gradient_checkpointing,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": has_eval,
        "metric_for_best_model": f"eval_{t.best_model_metric}" if has_eval else None,
        "greater_is_better": t.best_model_metric != "loss" if has_eval else None,
        "logging_steps": t.logging_steps,
        "report_to": t.report_to,
        "seed": t.seed,
        "data_seed": t.seed,
        "dataloader_num_workers": 0,
        "ddp_find_unused_parameters": False,  # LoRA: every trainable weight is used in every step
    }


def training_callbacks(t: TrainArgs, has_eval: bool) -> list[Any]:
    """The callbacks a recipe adds to its Trainer: early stopping (``train.early_stopping_patience``), which
    watches ``train.best_model_metric`` at each validation."""
    if t.early_stopping_patience is None or not has_eval:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience)]


def is_trained(out_dir: Path, weights_dir: str, marker: str) -> bool:
    """Whether ``out_dir`` holds a finished training: its weights (``weights_dir/marker``) and ``training.json``."""
    return (out_dir / weights_dir / marker).is_file() and (out_dir / TRAINING_SUMMARY).is_file()


def read_summary(out_dir: Path) -> dict[str, Any]:
    """The ``training.json`` of a finished training."""
    return read_json(out_dir / TRAINING_SUMMARY, "the training summary written by gen-emotion")


def log_callback() -> Any:
    """A ``TrainerCallback`` that writes the trainer's log lines (loss, learning rate, validation loss) to the
    run's log too, not only to the progress bar."""
    from transformers import TrainerCallback

    class LogToRunLog(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                figures = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())
                log.info("step %d: %s", state.global_step, figures)

    return LogToRunLog()


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""The errors of a write that found no room: a full disk, a quota, a file-size limit."""


def disk_full(err: BaseException) -> str | None:
    """Why a write failed, when it failed for want of room (a full disk, a quota, a file-size limit), else None.
    safetensors raises its own error type, with the operating system's message in its text."""
    if isinstance(err, OSError):
        return err.strerror if err.errno in NO_ROOM else None
    text = str(err)
    if type(err).__name__ == "SafetensorError" and "I/O error: " in text:
        reason = text.split("I/O error: ", 1)[1]
        return reason if any(f"os error {code})" in reason for code in NO_ROOM) else None
    return None


def last_whole_checkpoint(checkpoints: Path) -> Path | None:
    """The last checkpoint in ``checkpoints`` that was saved whole, or None.

    The Trainer writes ``trainer_state.json`` last, after the weights, optimizer, scheduler and RNG states, so a
    checkpoint whose state does not parse was cut mid-save (a kill, a full disk): it is skipped with a warning,
    and the one before it is used. (The Trainer's own choice, the highest step number, would load the cut one.)
    """
    found = sorted(
        (int(path.name.removeprefix("checkpoint-")), path)
        for path in checkpoints.glob("checkpoint-*")
        if path.is_dir() and path.name.removeprefix("checkpoint-").isdigit()
    )
    for _, path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("%s was cut mid-save: skipped, training resumes from the checkpoint before it", path.name)
            continue
        return path
    return None


def train_and_save(
    trainer: Any, tokenizer: Any, out_dir: Path, weights_dir: str, summary: dict[str, Any], started: float
) -> dict[str, Any]:
    """Train (resuming from the last checkpoint in ``out_dir/checkpoints``), save the chosen weights and the
    tokenizer in ``out_dir/weights_dir``, and write ``train_log.json`` and ``training.json`` (``summary`` plus
    the trainer's figures). Returns the summary."""
    trainer.add_callback(log_callback())
    checkpoints = Path(trainer.args.output_dir)
    resume = last_whole_checkpoint(checkpoints)
    if resume is not None:
        log.info("resuming training from %s", resume)
    target = out_dir / weights_dir
    try:
        result = trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        trainer.save_model(str(target))  # every process: FSDP and ZeRO-3 gather the shards here
    except Exception as err:
        reason = disk_full(err)
        if reason is None:
            raise
        raise GenEmotionError(
            f"{out_dir}: cannot write a checkpoint or the trained weights ({reason}); free some space and rerun "
            "the same command: training resumes from the last whole checkpoint"
        ) from None
    trainer.accelerator.wait_for_everyone()
    history = trainer.state.log_history
    eval_losses = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    eval_f1s = [entry["eval_macro_f1"] for entry in history if "eval_macro_f1" in entry]
    best = trainer.state.best_model_checkpoint
    summary = {
        **summary,
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "best_eval_loss": float(min(eval_losses)) if eval_losses else None,
        **({"best_eval_macro_f1": float(max(eval_f1s))} if eval_f1s else {}),
        "best_checkpoint": Path(best).name if best else None,
        "train_runtime_s": round(float(result.metrics.get("train_runtime", 0.0)), 2),
        **({"train_tokens": int(trainer._total_train_tokens)} if hasattr(trainer, "_total_train_tokens") else {}),
        "processes": int(trainer.accelerator.num_processes),
        "seconds": round(time.perf_counter() - started, 1),
        **{key: value for key, value in peak_memory().items() if "cuda" in key},  # this process's GPU peak
    }
    # Under accelerate launch every process gets here holding the same history and tokenizer: rank 0 alone writes
    # them (N writers would replace the same files and delete the checkpoints under each other), its summary
    # (its own GPU peak) standing for the run's. The barrier below keeps every process until the files exist.
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(target))
        write_text(out_dir / TRAIN_LOG, json.dumps(history, indent=1))
        write_json(out_dir / TRAINING_SUMMARY, summary)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the saved weights are the chosen ones
    trainer.accelerator.wait_for_everyone()
    return summary
