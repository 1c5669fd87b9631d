"""The handlers of the ``gen-emotion`` subcommands (``cli`` builds the parser and turns errors into one line)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError


def _launcher(args: argparse.Namespace, recipe) -> object:
    """The step launcher for ``--gpus``/``--accelerate-config``, checked against the recipe and this machine; without
    ``--accelerate-config``, several GPUs train with ``multi_gpu.default_strategy``'s, as on a pod."""
    from gen_emotion.models.hardware import (
        ModelShape,
        accelerate_config_path,
        accelerate_sharding,
        check_gpu_plan,
        check_local_packages,
        model_shape,
    )
    from gen_emotion.models.multi_gpu import default_strategy
    from gen_emotion.runs.steps import Launcher, Machines
    from gen_emotion.tasks.base import get_task

    check_local_packages(recipe)
    task = get_task(recipe.task)
    if args.gpus < 1:
        raise GenEmotionError(f"--gpus must be at least 1, got {args.gpus}")
    config = accelerate_config_path(args.accelerate_config or "ddp")  # a name or a file: refused at once if neither
    machines = Machines.from_flags(
        getattr(args, "num_machines", None),
        getattr(args, "machine_rank", None),
        getattr(args, "main_process_ip", None),
        getattr(args, "main_process_port", 29500),
    )
    processes = args.gpus * (machines.count if machines else 1)
    if processes > 1:
        import torch

        visible = torch.cuda.device_count()
        try:
            shape = model_shape(recipe.model.name)
        except GenEmotionError:  # a hub model whose size its name does not say: the heads are checked by vLLM
            shape = ModelShape(0.0)
        if args.accelerate_config is None:
            card_gb = torch.cuda.get_device_properties(0).total_memory / 1e9 if visible else None
            config = accelerate_config_path(default_strategy(recipe, shape, processes, card_gb) or "ddp")
        check_gpu_plan(recipe, task.multi_gpu, processes, accelerate_sharding(config), shape)  # the plan, then the GPUs
        if visible < args.gpus and not getattr(args, "ray_address", None):  # a Ray cluster's GPUs: its own check
            raise GenEmotionError(f"--gpus {args.gpus}: this machine has {visible} CUDA GPU(s)")
    return Launcher(gpus=args.gpus, accelerate_config=str(config), machines=machines)


def check_data(data: str | None) -> None:
    """``--data`` names a data folder or a dataset id (``sources.source_kind``); refused at once otherwise."""
    from gen_emotion.data.sources import source_kind

    if data is not None:
        source_kind(data)


def _ids_note(recipe) -> str:
    """What the summary adds where the data has no ID column."""
    return "; no ID column: IDs are row numbers, from 0" if recipe.data.id_column is None else ""


def cmd_run(args: argparse.Namespace) -> int:
    from gen_emotion.config.recipes import load_recipe
    from gen_emotion.config.task_kinds import task_kind
    from gen_emotion.models.multi_gpu import resolve_for_gpus
    from gen_emotion.runs.folder import SUBMISSION, default_run_dir
    from gen_emotion.runs.pipeline import run_recipe

    overrides = list(args.overrides)
    recipe = load_recipe(args.recipe, overrides)
    if args.backend:
        if not task_kind(recipe.task).generates_text:
            raise GenEmotionError(f"--backend is for generative recipes; {args.recipe} has task {recipe.task!r}")
        overrides.append(f"generate.backend={args.backend}")
    recipe, _ = resolve_for_gpus(args.recipe, overrides, args.gpus)
    check_data(args.data)
    launcher = _launcher(args, recipe)
    run_dir = args.out or default_run_dir(recipe)
    if args.val is not None and not args.val.exists():
        raise GenEmotionError(f"--val {args.val}: no such file")
    metrics = run_recipe(recipe, args.data, run_dir, launcher=launcher, restart=args.restart, val=args.val)
    if metrics is None:
        print(f"machine {launcher.machines.rank}: its share of the training is done; machine 0 writes the run")
        return 0
    held = metrics.held_out
    print(f"run folder: {run_dir}")
    print(f"held-out macro-F1 {held['macro_f1']:.4f}  micro-F1 {held['micro_f1']:.4f}  jaccard {held['jaccard']:.4f}")
    if metrics.decision == "thresholds" and metrics.probabilities is not None:
        honest = metrics.probabilities["thresholded_macro_f1_cv"]
        print(f"with per-label thresholds (used for the submission): macro-F1 {honest:.4f} cross-validated")
    print(f"submission: {run_dir / SUBMISSION} ({metrics.test_rows} rows{_ids_note(recipe)})")
    _print_test_scores(metrics.test)
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from gen_emotion.distributed.cluster import on_ray
    from gen_emotion.evaluation.cv import default_cv_dir, run_cv
    from gen_emotion.models.multi_gpu import resolve_for_gpus
    from gen_emotion.runs.folder import SUBMISSION

    recipe, _ = resolve_for_gpus(args.recipe, args.overrides, args.gpus)  # as launch and runpod/entry.sh do
    check_data(args.data)
    if args.folds < 2:
        raise GenEmotionError(f"--folds must be at least 2, got {args.folds}")
    launcher = _launcher(args, recipe)
    run_dir = args.out or default_cv_dir(recipe)
    parallel = None
    if on_ray(args.parallel_folds, "--parallel-folds", args.ray_address):
        from gen_emotion.config.task_kinds import task_kind
        from gen_emotion.distributed.cluster import parallel_folds

        parallel = parallel_folds(args.parallel_folds, args.ray_address, task_kind(recipe.task).transformers_model)
    metrics = run_cv(
        recipe,
        args.data,
        run_dir,
        folds=args.folds,
        rows=args.rows,
        keep_models=not args.drop_models,
        launcher=launcher,
        restart=args.restart,
        parallel=parallel,
    )
    print(f"cv folder: {run_dir}")
    print(
        f"out-of-fold macro-F1 {metrics.macro_f1:.4f} (per fold {metrics.per_fold_macro_f1_mean:.4f} "
        f"± {metrics.per_fold_macro_f1_std:.4f})  micro-F1 {metrics.micro_f1:.4f}  "
        f"jaccard {metrics.jaccard:.4f}  {metrics.wall_s:.0f} s"
    )
    how = "the fold models' mean probabilities" if metrics.has_probabilities else "the fold models' majority vote"
    print(f"submission: {run_dir / SUBMISSION} ({metrics.test_rows} rows, {how}{_ids_note(recipe)})")
    _print_test_scores(metrics.test)
    return 0


def _print_test_scores(scores: dict[str, Any] | None) -> None:
    """The summary's line for a test split with gold labels (a hub dataset's): the submission scored."""
    if scores is not None:
        print(
            f"test split (gold labels, as submitted): macro-F1 {scores['macro_f1']:.4f}  "
            f"micro-F1 {scores['micro_f1']:.4f}  jaccard {scores['jaccard']:.4f}"
        )


def cmd_show(args: argparse.Namespace) -> int:
    from gen_emotion.cli.catalog import describe_recipe
    from gen_emotion.config.recipes import find_recipe
    from gen_emotion.models.multi_gpu import resolve_for_gpus, strategy_for
    from gen_emotion.tasks.base import get_task

    if args.gpus < 1:
        raise GenEmotionError(f"--gpus must be at least 1, got {args.gpus}")
    recipe, overrides = resolve_for_gpus(args.recipe, args.overrides, args.gpus)
    given = f", overrides: {' '.join(overrides)}" if overrides else ""
    print(f"# recipe {find_recipe(args.recipe)}{given}: resolved and checked")
    if args.gpus > 1 and not get_task(recipe.task).multi_gpu:
        print(f"# --gpus {args.gpus}: refused by run and cv, as task {recipe.task} trains in one process on one GPU")
    elif args.gpus > 1:
        print(f"# --gpus {args.gpus}: training under accelerate, config {strategy_for(recipe, args.gpus)} by default")
    print(describe_recipe(recipe), end="")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from gen_emotion.config.recipes import load_recipe
    from gen_emotion.data.dataset import sample_data_dir
    from gen_emotion.training.inspection import run_inspect

    recipe = load_recipe(args.recipe, list(args.overrides))
    check_data(args.data)
    text, consistent = run_inspect(recipe, args.data or sample_data_dir(), args.rows, args.json)
    print(text)
    return 0 if consistent else 1


def _predict_settings(args: argparse.Namespace) -> Any:
    from gen_emotion.serving.predictor import PredictSettings

    return PredictSettings(backend=args.backend, with_probs=args.probs or None, overrides=tuple(args.overrides))


def cmd_predict(args: argparse.Namespace) -> int:
    from gen_emotion.distributed.cluster import on_ray
    from gen_emotion.serving.predict_file import predict_file
    from gen_emotion.serving.predictor import folder_recipe

    if sum(x is not None for x in (args.input, args.text)) != 1:
        raise GenEmotionError("predict takes one of --input FILE (- for standard input) or --text TEXT")
    if args.text is not None or args.input == Path("-"):
        if args.workers is not None:
            raise GenEmotionError("--workers goes with --input FILE")
        return predict_texts(args)
    if args.out is None:
        raise GenEmotionError("predict --input FILE needs --out PRED.csv")
    if on_ray(args.workers, "--workers", args.ray_address):
        from gen_emotion.distributed.sharded_predict import predict_with_workers

        settings = _predict_settings(args)
        result = predict_with_workers(args.run_dir, args.input, args.out, settings, args.workers, args.ray_address)
    else:
        result = predict_file(args.run_dir, args.input, args.out, _predict_settings(args))
    extra = f" and {args.out.stem}_probs.csv" if result["probs"] else ""
    note = _ids_note(folder_recipe(args.run_dir)) if args.input.suffix.lower() != ".txt" else ""
    print(f"wrote {args.out}: {result['rows']} rows{extra} (the {result['kind']} folder's decision{note})")
    return 0


def predict_texts(args: argparse.Namespace) -> int:
    """``predict --text TEXT`` (repeatable) or ``--input -`` (one text a line on standard input): the labels on
    standard output, one line per text (``anger, joy`` or ``none``), or a CSV with ``--out``."""
    import tempfile

    from gen_emotion.config.recipes import label_set
    from gen_emotion.serving.predict_file import predict_file
    from gen_emotion.serving.predictor import folder_recipe, load_predictor

    texts = args.text if args.text is not None else read_standard_input()
    if args.out is not None:
        with tempfile.TemporaryDirectory(prefix="gen-emotion-texts-") as tmp:
            source = Path(tmp) / "texts.txt"
            source.write_text("".join(f"{text}\n" for text in texts), encoding="utf-8")
            predict_file(args.run_dir, source, args.out, _predict_settings(args))
        return 0
    labels = label_set(folder_recipe(args.run_dir))
    with load_predictor(args.run_dir, _predict_settings(args)) as predictor:
        for row in predictor.predict(texts).labels:
            print(labels.render(row))
    return 0


def read_standard_input() -> list[str]:
    texts = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            texts.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as err:
            raise GenEmotionError(
                f"standard input: line {number}: not valid UTF-8 (byte {raw[err.start]:#04x}); give UTF-8 text"
            ) from None
    if not texts:
        raise GenEmotionError("standard input: no text to predict")
    return texts


def cmd_export_model(args: argparse.Namespace) -> int:
    from gen_emotion.serving.export import export_model, push_to_hub

    if args.private and not args.push_to_hub:
        raise GenEmotionError("--private goes with --push-to-hub")
    if args.push_to_hub and not os.environ.get("HF_TOKEN", "").strip():
        raise GenEmotionError("--push-to-hub needs a write token in HF_TOKEN; nothing was written or uploaded")
    description = export_model(args.run_dir, args.out, merged=args.merged)
    print(f"wrote {args.out}: {description['title']}, its gen_emotion.json and model card")
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(args.out, args.push_to_hub, args.private)}")
    return 0


def cmd_recipes(args: argparse.Namespace) -> int:
    from gen_emotion.cli.catalog import copy_recipe, shipped_recipes

    if args.action == "cp":
        if len(args.names) != 2:
            raise GenEmotionError("recipes cp takes a recipe name and a destination: recipes cp NAME DEST")
        print(f"wrote {copy_recipe(args.names[0], Path(args.names[1]))}")
        return 0
    if args.names:
        raise GenEmotionError("recipes lists the shipped recipes; recipes cp NAME DEST copies one")
    rows = shipped_recipes()
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        print(f"{row['name']:<{width}}  {row['task']:<8}  {row['where']:<9}  {row['description']}")
        print(f"{'':<{width}}  time: {row['time']}")
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from gen_emotion.core.labels import LABELS
    from gen_emotion.generation.parsing import parse

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(LABELS)
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise GenEmotionError(
                f"standard input: line {number}: not valid UTF-8 (byte {raw[err.start]:#04x}); give UTF-8 text"
            ) from None
        writer.writerow(parse(line.rstrip("\r\n")).tolist())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gen_emotion.data.dataset import label_counts
    from gen_emotion.data.formats import read_emotion_file

    data = read_emotion_file(args.path, columns=recipe_columns(args.recipe))
    print(f"{args.path}: {len(data)} rows, {'labelled' if data.labels is not None else 'unlabelled'}")
    if data.labels is not None:
        counts = label_counts(data.labels, data.label_names)
        width = max(map(len, counts))
        for label, count in counts.items():
            print(f"  {label:<{width}}  {count:>6}  ({count / len(data):.1%})")
        print(f"  {'(none)':<{width}}  {int((data.labels.sum(axis=1) == 0).sum()):>6}")
    empty = sum(1 for text in data.texts if not text.strip())
    if empty:
        print(f"  note: {empty} row(s) with an empty tweet (kept)")
    return 0


def recipe_columns(recipe: str | None) -> Any:
    """The columns of a recipe's data (``--recipe``), else the Kaggle/SemEval ones."""
    from gen_emotion.config.recipes import columns, load_recipe
    from gen_emotion.data.dataset import SEMEVAL_COLUMNS

    return columns(load_recipe(recipe)) if recipe else SEMEVAL_COLUMNS


def cmd_score(args: argparse.Namespace) -> int:
    from gen_emotion.data.dataset import ID_COLUMN, DataError
    from gen_emotion.data.formats import read_label_file
    from gen_emotion.scoring.metrics import format_table, score
    from gen_emotion.scoring.prediction_files import align

    columns = recipe_columns(args.recipe)
    gold = read_label_file(args.gold, columns)
    own = replace(columns, labels=gold.label_names, label_column=None)  # a predictions file: one 0/1 column a label
    try:  # the toolkit's own prediction files name their ID column ID, whatever the data's is
        predictions = read_label_file(args.pred, replace(own, id=ID_COLUMN))
    except DataError:
        predictions = read_label_file(args.pred, own)
    scores = score(gold.labels, align(gold.ids, predictions, what="gold"), gold.label_names)
    print(json.dumps(scores, indent=2) if args.json else format_table(scores))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gen_emotion.scoring.prediction_files import export_submission

    rows = export_submission(args.pred, args.test, args.out, recipe_columns(args.recipe))
    print(f"wrote {args.out}: {rows} rows in {args.test} order")
    return 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from gen_emotion.evaluation.ensemble import run_ensemble
    from gen_emotion.runs.folder import SUBMISSION

    metrics = run_ensemble(args.run_dirs, args.out, weighted=args.weighted, stacked=args.stack)
    for member in metrics.members:
        print(f"  {member['name']:<40} macro-F1 {member['macro_f1']:.4f}  weight {member['weight']:.3f}")
    print(
        f"ensemble ({metrics.mode}): out-of-fold macro-F1 {metrics.macro_f1:.4f} "
        f"(honest {metrics.macro_f1_thresholds_cv:.4f}), micro-F1 {metrics.micro_f1:.4f}, "
        f"jaccard {metrics.jaccard:.4f}"
    )
    print(f"submission: {args.out / SUBMISSION}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from gen_emotion.evaluation.report import write_report

    paths = write_report(args.run_dirs, args.out)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _keyed_options(kind: type, args: argparse.Namespace) -> Any:
    """``serve``'s or ``studio``'s options from their arguments; the key from ``GEN_EMOTION_API_KEY`` when no
    ``--api-key`` was given (so it need not be in the shell's history or the process list)."""
    from dataclasses import fields

    from gen_emotion.serving.server import API_KEY_ENV

    options = kind(**{item.name: getattr(args, item.name) for item in fields(kind)})
    if options.api_key is None:
        options.api_key = os.environ.get(API_KEY_ENV, "").strip() or None
    return options


def cmd_serve(args: argparse.Namespace) -> int:
    from gen_emotion.core.logs import setup_logging
    from gen_emotion.serving.server import ServeOptions, serve

    options = _keyed_options(ServeOptions, args)
    setup_logging()
    serve(args.folder, options)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from gen_emotion.sweeps.sweep import SweepOptions, run_sweep, sweep_options

    options = sweep_options({item.name: getattr(args, item.name) for item in fields(SweepOptions)})
    result = run_sweep(args.recipe, list(args.overrides), options)
    counts = ", ".join(f"{n} {state}" for state, n in result["counts"].items())
    print(f"sweep folder: {result['sweep_dir']} ({counts})")
    best = result["best"]
    if best is None:
        print("no trial completed: see sweep.json for each one's reason")
        return 1
    print(f"best: trial {best['number']} ({best['folder']}), {result['objective_means']} {best['objective']:.4f}")
    print(f"  settings: {', '.join(f'{k}={v}' for k, v in best['params'].items())}; recipe: {result['best_recipe']}")
    if "holdout" in result:
        held = result["holdout"]
        print(
            f"  holdout ({held['fraction']:g} of the rows, seen by no trial): {held['macro_f1']:.4f}, beside the best "
            f"trial's {best['objective']:.4f} (the best of {sum(result['counts'].values())}: optimistic)"
        )
    if "ensemble" in result:
        ens = result["ensemble"]
        print(f"  ensemble of the {len(ens['trials'])} best: {ens['folder']}, honest {ens['honest_macro_f1']:.4f}")
    return 0


def cmd_studio(args: argparse.Namespace) -> int:
    from gen_emotion.core.logs import setup_logging
    from gen_emotion.studio.app import StudioOptions, studio

    options = _keyed_options(StudioOptions, args)
    setup_logging()
    studio(args.runs_dir, options)
    return 0
