"""``gen-emotion predict FOLDER --input FILE``: a file's texts read (a data file or one text a line), predicted by the
folder's loaded model a shard at a time (saved, so a killed predict resumes), and written as the run writes its
predictions (``predict_file``); ``distributed/sharded_predict`` writes the same files from Ray workers."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import columns, label_set
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.data.dataset import SEMEVAL_COLUMNS, Columns, EmotionData
from gen_emotion.data.formats import read_test
from gen_emotion.runs.locks import writing_file
from gen_emotion.scoring.prediction_files import write_predictions, write_probabilities
from gen_emotion.serving.predictor import PredictSettings, TextPredictions, folder_recipe, load_predictor

log = logging.getLogger(__name__)


def read_inputs(path: Path, columns: Columns = SEMEVAL_COLUMNS) -> EmotionData:
    """Texts to predict: a data file with the folder's ID and text columns, or a ``.txt`` file with one
    text per line (IDs are the line numbers, from 1; blank lines are texts too, never dropped)."""
    if path.suffix.lower() == ".txt":
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise GenEmotionError(f"{path}: cannot read as UTF-8 text ({err})") from None
        if not lines:
            raise GenEmotionError(f"{path}: file is empty")
        return EmotionData(ids=[str(i) for i in range(1, len(lines) + 1)], texts=lines, labels=None, source=str(path))
    return read_test(path, columns)


def shard_key(folder: Path, settings: PredictSettings, *extra: object) -> str:
    """The name of the folder a predict saves its shards in: the trained folder and how it predicts (and ``extra``,
    what else decides the shards), so a predict with other settings never reads another's shards."""
    import hashlib
    import json

    key = json.dumps([str(folder.resolve()), settings.backend, settings.with_probs, list(settings.overrides), *extra])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def shards_folder(out_path: Path) -> Path:
    """Where a predict into ``out_path`` keeps its shards until the files are written: ``.OUT.shards/``."""
    return out_path.parent / f".{out_path.name}.shards"


def saved_rows(found: TextPredictions) -> list[dict[str, Any]]:
    """One row per text as a saved shard holds it (JSON): its labels, its probabilities and its output."""
    return [
        {
            "labels": found.labels[i].tolist(),
            "probs": None if found.probs is None else found.probs[i].tolist(),
            "output": None if found.outputs is None else found.outputs[i],
        }
        for i in range(len(found.texts))
    ]


def write_saved_rows(
    out_path: Path, data: EmotionData, names: tuple[str, ...], rows: list[dict[str, Any]], has_probs: bool
) -> None:
    """Write the predictions of ``data`` (``saved_rows``, in its order) to ``out_path`` and, where the folder has
    probabilities (``has_probs``), ``OUT_probs.csv``."""
    labels = np.array([row["labels"] for row in rows], dtype=np.int64).reshape(len(rows), len(names))
    outputs = [row["output"] for row in rows] if rows and rows[0]["output"] is not None else None
    if has_probs:
        probs = np.array([row["probs"] for row in rows], dtype=np.float64).reshape(len(rows), len(names))
        write_probabilities(out_path.with_name(f"{out_path.stem}_probs.csv"), data.ids, probs, names)
    write_predictions(out_path, data.ids, labels, outputs, names)


def predict_file(
    folder: Path, input_path: Path, out_path: Path, settings: PredictSettings | None = None
) -> dict[str, Any]:
    """Predict every row of ``input_path`` with a trained folder into ``out_path`` (``ID``, the labels, a
    generation run's ``output``) and, where the folder has probabilities, ``OUT_probs.csv``. A generation model
    predicts in shards of ``generate.shard_size`` rows saved beside ``out_path`` as they are made, so an
    interrupted call resumes (and shows its progress); they are removed once the files are written."""
    import shutil

    from gen_emotion.generation.generate import run_in_shards

    settings = settings or PredictSettings()
    recipe = folder_recipe(folder)
    names = label_set(recipe).names
    data = read_inputs(input_path, replace(columns(recipe), labels=names))  # bad input fails before any load
    with writing_file(out_path):  # one predict into out_path at a time
        with load_predictor(folder, settings) as predictor:
            if predictor.generates:
                shard_dir = shards_folder(out_path) / shard_key(folder, settings)

                def chunk(start: int, stop: int, index: int) -> list[dict[str, Any]]:
                    return saved_rows(predictor.predict(data.texts[start:stop], first_shard=index))

                rows = run_in_shards(chunk, data.ids, shard_dir, shard_size=recipe.generate.shard_size, desc="predict")
            else:
                rows, shard_dir = saved_rows(predictor.predict(data.texts)), None
        write_saved_rows(out_path, data, names, rows, predictor.has_probs)
        if shard_dir is not None:
            shutil.rmtree(shard_dir.parent, ignore_errors=True)
    return {"rows": len(data), "probs": predictor.has_probs, "kind": predictor.kind}
