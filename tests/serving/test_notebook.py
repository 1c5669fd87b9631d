"""The notebook API (``gen_emotion.serving.notebook``): the example in docs/serving.md runs as written, and a finished
run predicts any texts as its ``gen-emotion predict`` does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, SAMPLE_DIR

import gen_emotion
from gen_emotion.cli.parser import main
from gen_emotion.core.errors import GenEmotionError


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("api")
    assert main(["run", "recipes/tfidf-logreg.yaml", "--out", str(folder / "runs" / "tfidf")]) == 0
    return folder


def docs_example() -> str:
    serving = (REPO_ROOT / "docs" / "serving.md").read_text()
    section = serving[serving.index("## In a notebook or a script") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_docs_example_runs_as_written(tfidf_run):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", docs_example()], cwd=tfidf_run, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[1] == "(2, 11)" and 0.0 <= float(lines[-1]) <= 1.0
    assert all(label in gen_emotion.LABELS for label in re.findall(r"'(\w+)'", lines[0]))


def test_predictions_are_the_runs_own(tfidf_run):
    run_dir = tfidf_run / "runs" / "tfidf"
    model = gen_emotion.EmotionModel.load(run_dir)
    test_csv = SAMPLE_DIR / "test.csv"
    texts = [line.split(",", 1)[1].rsplit(",", 11)[0].strip('"') for line in test_csv.read_text().splitlines()[1:6]]
    result = model.predict(texts)
    assert result.labels.shape == (5, 11) and result.outputs is None
    probs = model.predict_proba(texts)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    if metrics["decision"] == "thresholds":
        cut = np.array([json.loads((run_dir / "thresholds.json").read_text())[label] for label in gen_emotion.LABELS])
    else:
        cut = np.full(11, 0.5)
    assert np.array_equal(result.labels, (probs >= cut).astype(int))
    assert result.to_frame().shape == (5, 12)
    assert model.predict([]).labels.shape == (0, 11)


def test_loading_what_is_not_a_finished_run(tmp_path):
    with pytest.raises(GenEmotionError, match="not a trained folder"):
        gen_emotion.EmotionModel.load(tmp_path)
    with pytest.raises(AttributeError):
        gen_emotion.nothing_here  # noqa: B018


@pytest.mark.slow
def test_a_generation_run_predicts_from_a_script_without_a_main_guard(tmp_path, generation_run):
    """vLLM starts worker processes that import the main script again: EmotionModel must not need the guard."""
    run_dir = generation_run
    script = tmp_path / "script.py"
    script.write_text(
        "import json\n"
        "from gen_emotion import EmotionModel\n"
        f"model = EmotionModel.load({str(run_dir)!r}, backend='vllm')\n"
        "result = model.predict(['I am so happy today', 'This is awful'])\n"
        "print(json.dumps({'outputs': result.outputs, 'labels': result.labels.tolist()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    from gen_emotion.core.labels import is_canonical
    from gen_emotion.generation.parsing import parse

    assert all(is_canonical(o) for o in printed["outputs"])
    assert printed["labels"] == [parse(o).tolist() for o in printed["outputs"]]
