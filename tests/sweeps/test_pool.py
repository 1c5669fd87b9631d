"""``sweep --parallel 2``: two trials at a time, as Ray tasks on a real local Ray of 2 CPUs or as two local processes
on the shared SQLite study, give the trials the sequential sweep gives (TF-IDF on the shipped sample: in the
sampler's random start each trial's settings depend on its number and the recipe's seed alone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gen_emotion.cli.parser import main

ray = pytest.importorskip("ray")
pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[2]
SPACE = REPO / "recipes" / "sweeps" / "tfidf-space.yaml"


def sweep(out: Path, *extra: str) -> list[tuple]:
    args = ["sweep", "tfidf-logreg", "--space", str(SPACE), "--trials", "4", "--folds", "3", "--out", str(out)]
    assert main([*args, *extra]) == 0
    rows = json.loads((out / "sweep.json").read_text())["trials"]
    return [(t["number"], t["state"], t["params"], t["objective"], t["fold_scores"]) for t in rows]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    return sweep(tmp_path_factory.mktemp("sequential") / "sweep")


def test_two_ray_tasks_at_a_time_give_the_sequential_sweeps_trials(sequential, tmp_path):
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        address = ray.get_runtime_context().gcs_address
        found = sweep(tmp_path / "sweep", "--parallel", "2", "--ray-address", address)
    finally:
        ray.shutdown()
    assert found == sequential
    assert "trials on Ray, 2 at a time, each with 1 CPU" in (tmp_path / "sweep" / "run.log").read_text()


def test_two_local_processes_give_the_sequential_sweeps_trials(sequential, tmp_path):
    assert sweep(tmp_path / "sweep", "--parallel", "2") == sequential
    assert "trials in 2 local processes at a time" in (tmp_path / "sweep" / "run.log").read_text()
