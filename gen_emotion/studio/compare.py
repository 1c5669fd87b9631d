"""The compare page: several folders' per-label F1 side by side, their recipes' differences (only the fields that
differ), and for each folder against the first, the paired bootstrap interval of the macro-F1 difference on the
held-out rows they share (``scoring.metrics.paired_bootstrap``), said plainly when it is within noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.runs.folder import RECIPE_FILE, load_run_recipe, read_folder_metrics, read_run_metrics
from gen_emotion.scoring.metrics import macro_f1, paired_bootstrap
from gen_emotion.studio.folders import folder_kind
from gen_emotion.studio.paths import RunsRoot
from gen_emotion.studio.rows import held_out_rows

MIN_SHARED = 20
"""Fewer shared rows than this: no interval (it would say nothing)."""


def per_label_f1(folder: Path) -> dict[str, float]:
    """A folder's per-label F1 as its metrics file has it (a run's held-out fold; a cv's or an ensemble's
    out-of-fold rows)."""
    if folder_kind(folder) == "run":
        table = read_run_metrics(folder).held_out.get("per_label", {})
    else:
        table = read_folder_metrics(folder).per_label
    return {name: float(v["f1"]) for name, v in table.items() if isinstance(v, dict) and "f1" in v}


def flat_recipe(folder: Path) -> dict[str, Any]:
    """A folder's resolved recipe as ``section.field: value`` (an ensemble: its mode and members)."""
    if (folder / RECIPE_FILE).is_file():
        return _flatten(load_run_recipe(folder).to_dict())
    metrics = read_folder_metrics(folder)
    return {"ensemble": getattr(metrics, "mode", None), "members": [m.get("name") for m in metrics.members]}


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def recipe_diff(recipes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields whose values are not all the same: ``{field, values}`` (a missing field: None)."""
    fields = sorted({key for recipe in recipes for key in recipe})
    rows = []
    for name in fields:
        values = [recipe.get(name) for recipe in recipes]
        if any(value != values[0] for value in values[1:]):
            rows.append({"field": name, "values": values})
    return rows


def bootstrap(root: RunsRoot, first: Path, other: Path) -> dict[str, Any]:
    """``other``'s macro-F1 minus ``first``'s on the held-out rows both predicted (matched by ID, gold labels
    the same), with the 95% paired bootstrap interval; ``{"note": ...}`` where there is none to give."""
    a, b = held_out_rows(root, first), held_out_rows(root, other)
    if a.gold is None or b.gold is None:
        return {"note": "no interval: the gold labels of a folder are not available"}
    if a.names != b.names:
        return {"note": "no interval: the folders have different labels"}
    where = {row_id: i for i, row_id in enumerate(b.ids)}
    shared = [(i, where[row_id]) for i, row_id in enumerate(a.ids) if row_id in where]
    if len(shared) < MIN_SHARED:
        return {"note": f"no interval: they share {len(shared)} held-out row(s) (fewer than {MIN_SHARED})"}
    ia, ib = np.array([s[0] for s in shared]), np.array([s[1] for s in shared])
    if not np.array_equal(a.gold[ia], b.gold[ib]):
        return {"note": "no interval: their shared rows have different gold labels (other data?)"}
    result = paired_bootstrap(a.gold[ia], b.predicted[ib], a.predicted[ia])
    low, high = result["ci95"]
    noise = low <= 0.0 <= high
    verdict = (
        "within noise: the interval holds 0, so these rows cannot tell them apart"
        if noise
        else f"{'better' if result['diff'] > 0 else 'worse'} beyond noise (the interval excludes 0)"
    )
    return {
        "rows": len(shared),
        "first_macro_f1": macro_f1(a.gold[ia], a.predicted[ia]),
        "other_macro_f1": macro_f1(b.gold[ib], b.predicted[ib]),
        "diff": result["diff"],
        "low": low,
        "high": high,
        "noise": noise,
        "verdict": verdict,
    }


def compare(root: RunsRoot, relatives: list[str]) -> dict[str, Any]:
    """Everything the compare page shows for the folders ``relatives`` (two or more)."""
    if len(relatives) < 2:
        raise GenEmotionError("select two or more folders to compare")
    folders = [root.resolve(rel) for rel in relatives]
    names = [rel or "." for rel in relatives]
    f1s = [per_label_f1(folder) for folder in folders]
    labels = tuple(dict.fromkeys(label for f1 in f1s for label in f1))
    values = [{"label": label, "folder": name, "f1": f1.get(label)} for name, f1 in zip(names, f1s) for label in labels]
    table = [{"label": label, "values": [f1.get(label) for f1 in f1s]} for label in labels]
    recipes = []
    for folder in folders:
        try:
            recipes.append(flat_recipe(folder))
        except GenEmotionError as err:
            recipes.append({"(unreadable)": str(err)})
    pairs = []
    for name, folder in zip(names[1:], folders[1:]):
        try:
            pairs.append({"name": name, **bootstrap(root, folders[0], folder)})
        except GenEmotionError as err:
            pairs.append({"name": name, "note": f"no interval: {err}"})
    return {
        "names": names,
        "labels": labels,
        "values": values,
        "table": table,
        "diff": recipe_diff(recipes),
        "pairs": pairs,
        "first": names[0],
    }
