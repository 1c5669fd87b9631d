"""``predict FOLDER --input FILE --workers N``: the input cut in shards that N Ray actors predict, each with the
folder loaded once, written exactly as one process writes them (``predict_file.predict_file``).

The shards are cut so that a shard predicted alone gets the numbers of one process:

- a generation model: the shards of ``generate.shard_size`` rows one process predicts too (each sampled with its
  own seed, ``first_shard``); their saved files are the same, so either command resumes the other's;
- a model whose rows depend on one another (a classifier pads each batch to its longest row): whole batches, as
  one call forms them (``LoadedModel.batches``), its rows in that order; members of an ensemble that batch
  differently leave one shard;
- a model whose every row stands alone (TF-IDF): any rows; shards of about a quarter of a worker's part.

This process alone writes: each shard's file (``.OUT.shards/KEY/shard-NNNNN.json``, written whole) as its
predictions arrive, then the output files in input order, then it removes the shards. A resumed predict reads the
shards already saved (checking their IDs) and sends only the others. A worker that dies is started again by Ray
(the model loaded anew) and its shard sent again (``max_restarts``, ``max_task_retries``): a shard's file is
written once, from the one answer that arrives. Plain actors over our own shard files rather than Ray Data: the
shards must be cut where the model's numbers allow, kept in input order and saved one by one for resuming, which
Ray Data's blocks and write paths would not give as simply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.config.recipes import columns, label_set
from gen_emotion.config.task_kinds import task_kind
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.distributed.cluster import one_line, ray_session, share_of
from gen_emotion.generation.generate import read_shard, shard_path, write_shard
from gen_emotion.runs.locks import writing_file
from gen_emotion.serving.predict_file import read_inputs, saved_rows, shard_key, shards_folder, write_saved_rows
from gen_emotion.serving.predictor import (
    CVPredictor,
    EnsemblePredictor,
    Predictor,
    PredictSettings,
    RunPredictor,
    folder_kind,
    folder_recipe,
    load_predictor,
)

log = logging.getLogger(__name__)

SHARDS_PER_WORKER = 4
MAX_SHARD_ROWS = 2048
RESTARTS = 3
"""How many times Ray starts a dead worker again, and sends its shard again."""


def row_groups(predictor: Predictor, texts: list[str]) -> list[np.ndarray] | None:
    """The groups of rows ``predictor`` predicts together (``LoadedModel.batches``), the same for all its models,
    or ``None`` where every row stands alone; models that group differently, or that predict in a process of
    their own (whose batches are not known here), leave one group of every row."""
    if isinstance(predictor, EnsemblePredictor):
        found = [row_groups(member, texts) for member in predictor.members]
    elif isinstance(predictor, (RunPredictor, CVPredictor)) and predictor.models.session is None:
        found = [model.batches(texts) for model in predictor.models.models]
    else:
        return [np.arange(len(texts))]
    groupings = [groups for groups in found if groups is not None]
    if not groupings:
        return None
    first = groupings[0]
    if all(len(g) == len(first) and all(np.array_equal(a, b) for a, b in zip(g, first)) for g in groupings):
        return first
    return [np.arange(len(texts))]


def bundle(groups: list[np.ndarray] | None, rows: int, size: int) -> list[list[int]]:
    """Shards of about ``size`` rows: consecutive ``groups`` put together whole, or runs of rows without groups."""
    if groups is None:
        return [list(range(start, min(start + size, rows))) for start in range(0, rows, size)]
    shards, current = [], []
    for group in groups:
        current.extend(int(i) for i in group)
        if len(current) >= size:
            shards.append(current)
            current = []
    return [*shards, current] if current else shards


class ShardWorker:
    """One Ray actor: the folder loaded once, then one shard after another."""

    def __init__(self, folder: str, settings: PredictSettings) -> None:
        self.predictor: Predictor | None = None
        self.error: str | None = None
        try:
            self.predictor = load_predictor(folder, settings)
        except GenEmotionError as err:  # reported in one line by ready(), not as a dead actor
            self.error = str(err)

    def ready(self) -> tuple[str | None, bool, bool, int]:
        """Its load error (or ``None``), whether the folder generates and has probabilities, its process id."""
        loaded = self.predictor
        return self.error, bool(loaded and loaded.generates), bool(loaded and loaded.has_probs), os.getpid()

    def plan(self, texts: list[str], size: int) -> list[list[int]]:
        assert self.predictor is not None
        return bundle(row_groups(self.predictor, texts), len(texts), size)

    def predict(self, texts: list[str], first_shard: int) -> list[dict[str, Any]]:
        assert self.predictor is not None
        return saved_rows(self.predictor.predict(texts, first_shard=first_shard))


def start_workers(ray: Any, folder: Path, settings: PredictSettings, workers: int) -> tuple[list[Any], list[tuple]]:
    """``workers`` actors with the folder loaded (a GPU each where its model is a transformers one and the cluster
    has GPUs), and what each's ``ready`` says. A folder that does not load is one line."""
    wants_gpu = task_kind(folder_recipe(folder).task).transformers_model
    share = share_of(ray, workers, 1, wants_gpu)
    log.info("predicting with %d Ray worker(s), each with %s", workers, share.describe())
    actor = ray.remote(ShardWorker).options(**share.options(), max_restarts=RESTARTS, max_task_retries=RESTARTS)
    pool = [actor.remote(str(folder), settings) for _ in range(workers)]
    answers = ray.get([worker.ready.remote() for worker in pool])
    for error, *_ in answers:
        if error:
            raise GenEmotionError(error)
    return pool, answers


def predict_with_workers(
    folder: Path,
    input_path: Path,
    out_path: Path,
    settings: PredictSettings | None,
    workers: int,
    address: str | None = None,
    on_shard: Callable[[int, list[Any]], None] | None = None,
) -> dict[str, Any]:
    """``predict_file`` over ``workers`` Ray actors (the module docstring): the same files, resumable by shard.
    ``on_shard(index, busy)`` is called as each shard is saved, with the workers that hold a shard then."""
    from tqdm.auto import tqdm

    settings = settings or PredictSettings()
    recipe = folder_recipe(folder)
    names = label_set(recipe).names
    data = read_inputs(input_path, replace(columns(recipe), labels=names))  # bad input fails before any load
    with writing_file(out_path), ray_session(address) as ray:
        pool, answers = start_workers(ray, folder, settings, workers)
        _, generates, has_probs, _ = answers[0]
        if generates:  # predict_file's own shards (and shard folder)
            size = recipe.generate.shard_size
            shards = [list(range(s, min(s + size, len(data)))) for s in range(0, len(data), size)]
            shard_dir = shards_folder(out_path) / shard_key(folder, settings)
        else:
            size = max(1, min(MAX_SHARD_ROWS, -(-len(data) // (workers * SHARDS_PER_WORKER))))
            shards = ray.get(pool[0].plan.remote(data.texts, size))
            shard_dir = shards_folder(out_path) / shard_key(folder, settings, "batches", size)
        shard_dir.mkdir(parents=True, exist_ok=True)
        results: dict[int, list[dict[str, Any]]] = {}
        for index, rows in enumerate(shards):
            saved = read_shard(shard_path(shard_dir, index), [data.ids[i] for i in rows], shard_dir)
            if saved is not None:
                results[index] = saved
        waiting = [index for index in range(len(shards)) if index not in results]
        log.info("%d shard(s) of about %d rows: %d saved, %d to predict", len(shards), size, len(results), len(waiting))
        with tqdm(total=len(data), desc="predict", unit="tweet") as bar:
            bar.update(sum(len(shards[i]) for i in results))
            run_shards(ray, pool, shards, waiting, data.texts, results, shard_dir, data.ids, bar, on_shard)
        rows: list[Any] = [None] * len(data)
        for index, shard in enumerate(shards):
            for position, row in zip(shard, results[index]):
                rows[position] = row
        if any(row is None for row in rows):
            raise GenEmotionError("internal error: the shards do not cover every row of the input")
        write_saved_rows(out_path, data, names, rows, has_probs)
        shutil.rmtree(shard_dir.parent, ignore_errors=True)
    pids = [answer[-1] for answer in answers]
    return {"rows": len(data), "probs": has_probs, "kind": folder_kind(folder), "shards": len(shards), "pids": pids}


def run_shards(
    ray: Any,
    pool: list[Any],
    shards: list[list[int]],
    waiting: list[int],
    texts: list[str],
    results: dict[int, list[dict[str, Any]]],
    shard_dir: Path,
    ids: list[str],
    bar: Any,
    on_shard: Callable[[int, list[Any]], None] | None,
) -> None:
    """Send the ``waiting`` shards to the free workers, one each at a time, and save each answer as it arrives;
    one line naming the shards that failed once every other is saved."""
    free, running, failed = list(pool), {}, {}
    try:
        while (waiting and free) or running:
            while waiting and free:
                index, worker = waiting.pop(0), free.pop(0)
                running[worker.predict.remote([texts[i] for i in shards[index]], index)] = (index, worker)
            done, _ = ray.wait(list(running), num_returns=1)
            index, worker = running.pop(done[0])
            try:
                rows = ray.get(done[0])
            except ray.exceptions.RayError as err:
                failed[index] = one_line(err)
                if not isinstance(err, ray.exceptions.RayActorError):
                    free.append(worker)  # a shard that failed; the worker itself is alive
                continue
            free.append(worker)
            if len(rows) != len(shards[index]):
                raise GenEmotionError(f"a worker returned {len(rows)} rows for a shard of {len(shards[index])}")
            write_shard(shard_path(shard_dir, index), [ids[i] for i in shards[index]], rows)
            results[index] = rows
            bar.update(len(rows))
            if on_shard is not None:
                on_shard(index, [w for _, w in running.values()])
    except BaseException:
        for ref in running:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise
    if failed or waiting:
        named = "; ".join(f"shard {i} failed: {failed[i]}" for i in sorted(failed))
        raise GenEmotionError(
            f"{named or 'every worker died'}; the {len(results)} other shard(s) are saved in {shard_dir}: "
            "run the same predict again to retry"
        )
