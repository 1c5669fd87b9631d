"""The pipeline steps put together: ``run`` a recipe end to end in a run folder.

A run folder holds the resolved recipe (``recipe.yaml``), the adapter, ``val_predictions.csv``,
``test_predictions.csv``, ``submission.csv``, ``metrics.json`` and ``run.log``. Each step is
skipped when its output already exists, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.data import EmotionData, read_label_file, read_test, read_train, split_fold
from gen_emotion.decode import parse_many
from gen_emotion.errors import GenEmotionError
from gen_emotion.export import write_predictions, write_submission
from gen_emotion.labels import is_canonical
from gen_emotion.metrics import score
from gen_emotion.models import resolve_model
from gen_emotion.prompts import load_templates, render_prompts
from gen_emotion.recipes import SECRET_NAMES, Recipe, recipe_from_dict

log = logging.getLogger("gen_emotion")


def sample_data_dir() -> Path:
    """The illustrative labelled sample shipped with the package (not real tweets)."""
    return Path(str(resources.files("gen_emotion") / "sample_data"))


class RedactSecrets(logging.Filter):
    """Replace the values of secret environment variables in log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [os.environ[name] for name in SECRET_NAMES if len(os.environ.get(name, "")) >= 4]
        if secrets:
            message = record.getMessage()
            for secret in secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def setup_logging(run_dir: Path | None = None, verbose: bool = True) -> None:
    """Log to stderr and, for a run, to ``run_dir/run.log``; secrets are redacted in both."""
    root = logging.getLogger("gen_emotion")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = []
    if verbose:
        handlers.append(logging.StreamHandler())
    if run_dir is not None:
        handlers.append(logging.FileHandler(run_dir / "run.log", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler.addFilter(RedactSecrets())
        root.addHandler(handler)


def default_run_dir(recipe: Recipe) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe.name}-{stamp}"


def prepare_run_dir(recipe: Recipe, run_dir: Path) -> None:
    """Create the run folder and write the resolved recipe; a resumed run must use the same recipe."""
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "recipe.yaml"
    if saved.is_file():
        import yaml

        previous = recipe_from_dict(yaml.safe_load(saved.read_text()), where=str(saved))
        if previous != recipe:
            raise GenEmotionError(
                f"{run_dir} holds a run of a different recipe; resume with the same recipe or use a new --out"
            )
    else:
        saved.write_text(recipe.to_yaml(), encoding="utf-8")


def predict_rows(
    generator: Any, tokenizer: Any, data: EmotionData, recipe: Recipe, desc: str
) -> tuple[np.ndarray, list[str], float]:
    """Generate and parse predictions for every row of ``data``, in order; returns labels, texts, seconds."""
    started = time.perf_counter()
    prompts = render_prompts(
        tokenizer, data.texts, load_templates(recipe.prompt.template), recipe.prompt.max_text_tokens
    )
    outputs = generator.generate(prompts, desc=desc)
    if len(outputs) != len(data):
        raise GenEmotionError(f"generation returned {len(outputs)} outputs for {len(data)} rows")
    return parse_many(outputs), outputs, time.perf_counter() - started


def _read_predictions(path: Path) -> tuple[np.ndarray, list[str]]:
    import csv

    labels = read_label_file(path).labels
    with path.open(newline="", encoding="utf-8") as handle:
        outputs = [row.get("output", "") for row in csv.DictReader(handle)]
    return labels, outputs


def run_recipe(recipe: Recipe, data_dir: Path | None, run_dir: Path) -> dict[str, Any]:
    """Hold out one fold of ``data_dir/train.csv``, train on the rest, predict the fold and
    ``data_dir/test.csv``, score, and write everything to ``run_dir``. Returns the metrics."""
    from gen_emotion.generate import load_generator
    from gen_emotion.train import ADAPTER_DIR, load_tokenizer, train

    data_dir = data_dir or sample_data_dir()
    prepare_run_dir(recipe, run_dir)
    setup_logging(run_dir)
    timings: dict[str, float] = {}

    started = time.perf_counter()
    full = read_train(data_dir / "train.csv")
    test = read_test(data_dir / "test.csv")
    train_data, held_out = split_fold(full, recipe.data.fold, recipe.data.folds, recipe.data.seed)
    timings["data_s"] = round(time.perf_counter() - started, 2)
    log.info(
        "data: %d training rows (%d in the training folds, %d held out as fold %d of %d), %d test rows from %s",
        len(full),
        len(train_data),
        len(held_out),
        recipe.data.fold,
        recipe.data.folds,
        len(test),
        data_dir,
    )

    adapter_dir = run_dir / ADAPTER_DIR
    metrics_path = run_dir / "metrics.json"
    previous = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if (adapter_dir / "adapter_config.json").is_file():
        log.info("adapter found in %s: skipping training", adapter_dir)
        training = previous.get("training", {})
    else:
        log.info("step 1/3: fine-tuning %s with LoRA", recipe.model.name)
        training = train(recipe, train_data, run_dir)
    timings["train_s"] = training.get("seconds", 0.0)

    model_path = resolve_model(recipe.model.name)
    val_path, test_path = run_dir / "val_predictions.csv", run_dir / "test_predictions.csv"
    generator = None
    tokenizer = load_tokenizer(str(adapter_dir), recipe)
    results: dict[str, tuple[np.ndarray, list[str]]] = {}
    for name, rows, path in (("held-out", held_out, val_path), ("test", test, test_path)):
        if path.is_file():
            log.info("%s predictions found in %s: skipping", name, path)
            results[name] = _read_predictions(path)
            continue
        if generator is None:
            started = time.perf_counter()
            generator = load_generator(model_path, adapter_dir, recipe)
            timings["load_generator_s"] = round(time.perf_counter() - started, 2)
        log.info(
            "step %d/3: predicting %d %s rows (%s backend)",
            2 if name == "held-out" else 3,
            len(rows),
            name,
            recipe.generate.backend,
        )
        labels, outputs, seconds = predict_rows(generator, tokenizer, rows, recipe, desc=name)
        timings[f"predict_{'val' if name == 'held-out' else 'test'}_s"] = round(seconds, 2)
        write_predictions(path, rows.ids, labels, outputs)
        results[name] = (labels, outputs)
    if generator is not None:
        generator.close()

    write_submission(run_dir / "submission.csv", test.ids, results["test"][0])
    val_labels, val_outputs = results["held-out"]
    test_outputs = results["test"][1]
    target_format = recipe.prompt.target_format
    parsed = sum(is_canonical(o, target_format) for o in val_outputs + test_outputs)
    metrics = {
        "recipe": recipe.name,
        "model": recipe.model.name,
        "held_out": {"fold": recipe.data.fold, "folds": recipe.data.folds, **score(held_out.labels, val_labels)},
        "outputs": {
            "total": len(val_outputs) + len(test_outputs),
            "canonical": parsed,
            "canonical_share": parsed / max(len(val_outputs) + len(test_outputs), 1),
        },
        "test_rows": len(test),
        "training": training,
        "timings": {**previous.get("timings", {}), **timings},
        "data": str(data_dir),
        "backend": recipe.generate.backend,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }
    metrics_path.write_text(json.dumps(metrics, indent=2))
    log.info(
        "held-out macro-F1 %.4f, micro-F1 %.4f, jaccard %.4f; %d/%d outputs in the grammar; wrote %s",
        metrics["held_out"]["macro_f1"],
        metrics["held_out"]["micro_f1"],
        metrics["held_out"]["jaccard"],
        parsed,
        metrics["outputs"]["total"],
        run_dir / "submission.csv",
    )
    return metrics
