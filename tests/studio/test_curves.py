"""The training curves read from what a run writes: a real MiniLM run (a few steps, validation every 2) whose
``train_log.json`` and ``run.log`` lines give the same points, drawn on its run page."""

from __future__ import annotations

import json

import pytest

from gen_emotion.studio.curves import folder_curves, log_points

from .studio_harness import cli

MINILM = [
    "train.max_steps=4",
    "train.logging_steps=1",
    "train.batch_size=8",
    "data.eval_rows=16",
    "train.eval_steps=2",
    "train.save_steps=2",
    "classifier.max_length=32",
]


@pytest.mark.slow
def test_curves_of_a_real_minilm_run(studio, runs_dir, tab):
    folder = runs_dir / "minilm"
    cli("run", "minilm-l6-cpu", "--data", str(runs_dir.parent / "data"), "--out", str(folder), *MINILM)
    history = json.loads((folder / "train_log.json").read_text())
    points = folder_curves(folder)
    losses = [(e["step"], e["loss"]) for e in history if "loss" in e]
    assert [(p["step"], p["value"]) for p in points if p["figure"] == "loss"] == losses and len(losses) == 4
    assert [p["step"] for p in points if p["figure"] == "eval_macro_f1"] == [2, 4]
    logged = log_points(folder / "run.log", "run")  # what a page shows while the run trains
    assert [(p["step"], p["figure"]) for p in logged] == [(p["step"], p["figure"]) for p in points]
    assert all(abs(a["value"] - b["value"]) <= 5e-4 * max(1.0, abs(b["value"])) for a, b in zip(logged, points))
    tab.open(f"{studio.url}/run/minilm")
    tab.page.wait_for_selector("#chart-curves svg")
    tab.shot("curves")
    tab.no_errors()
