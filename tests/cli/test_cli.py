"""The ``gen-emotion`` command, in-process through ``main`` and once per kind as a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LABEL_HEADER, REPO_ROOT, TRAIN_HEADER, onehot, write_rows

from gen_emotion.cli.parser import main
from gen_emotion.core.labels import LABELS
from gen_emotion.data.formats import read_label_file, read_test, read_train
from gen_emotion.generation.parsing import parse
from gen_emotion.scoring.metrics import score
from gen_emotion.scoring.prediction_files import write_predictions

CPU_RECIPE = REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml"


def run_cli(args: list[str], cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "gen_emotion.cli.parser", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def assert_one_line_error(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gen-emotion: error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def bad_train(tmp_path) -> Path:
    rows = [["a", "fine", *onehot("joy")], ["b", "bad", *onehot()[:-1], "x"]]
    return write_rows(tmp_path / "bad.csv", TRAIN_HEADER, rows)


# --- check --------------------------------------------------------------------------------------


def test_check_valid_file(capsys, sample_dir):
    path = sample_dir / "train.csv"
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    data = read_train(path)
    assert f"{len(data)} rows" in out
    assert "300 rows" in out
    assert "labelled" in out
    lines = out.splitlines()
    for label, count in zip(LABELS, data.labels.sum(axis=0)):
        line = next(line for line in lines if line.split() and line.split()[0] == label)
        assert int(line.split()[1]) == int(count)


def test_check_test_file(capsys, sample_dir):
    assert main(["check", str(sample_dir / "test.csv")]) == 0
    out = capsys.readouterr().out
    assert "80 rows" in out
    assert "unlabelled" in out


def test_check_notes_empty_tweets(capsys, tmp_path):
    path = write_rows(tmp_path / "t.csv", TRAIN_HEADER, [["a", "", *onehot()], ["b", "x", *onehot("joy")]])
    assert main(["check", str(path)]) == 0
    assert "1 row(s) with an empty tweet" in capsys.readouterr().out


def test_check_bad_file_in_process(capsys, bad_train):
    assert main(["check", str(bad_train)]) == 2
    captured = capsys.readouterr()
    line = assert_one_line_error(captured.err)
    assert str(bad_train) in line
    assert "row 3" in line
    assert "trust" in line


def test_check_bad_file_subprocess(tmp_path, bad_train):
    result = run_cli(["check", str(bad_train)], cwd=tmp_path)
    assert result.returncode == 2
    line = assert_one_line_error(result.stderr)
    assert str(bad_train) in line
    assert "row 3" in line
    assert result.stdout == ""


def test_check_missing_file(capsys, tmp_path):
    assert main(["check", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in assert_one_line_error(capsys.readouterr().err)


# --- parse --------------------------------------------------------------------------------------


def test_parse_stdin_subprocess(tmp_path):
    lines = ["anger, joy", "none", "Trust and FEAR", "", "['sadness']", "gibberish", "love<|im_end|>anger"]
    result = run_cli(["parse"], cwd=tmp_path, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == list(LABELS)
    assert ",".join(rows[0]) == "anger,anticipation,disgust,fear,joy,love,optimism,pessimism,sadness,surprise,trust"
    assert len(rows) == 1 + len(lines)
    for line, row in zip(lines, rows[1:]):
        assert row == [str(v) for v in parse(line).tolist()]
        assert set(row) <= {"0", "1"}
    assert rows[1] == [str(v) for v in onehot("anger", "joy")]
    assert rows[3] == [str(v) for v in onehot("fear", "trust")]


def test_parse_empty_stdin(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["parse"]) == 0
    assert capsys.readouterr().out.splitlines() == [",".join(LABELS)]


# --- score --------------------------------------------------------------------------------------


@pytest.fixture
def gold_and_pred(tmp_path, sample_dir) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    gold_path = sample_dir / "test_labels.csv"
    gold = read_label_file(gold_path)
    rng = np.random.default_rng(0)
    flip = rng.random(gold.labels.shape) < 0.2
    pred_labels = np.where(flip, 1 - gold.labels, gold.labels)
    order = rng.permutation(len(gold))  # predictions in another order: matched by ID
    pred_path = tmp_path / "pred.csv"
    write_predictions(pred_path, [gold.ids[i] for i in order], pred_labels[order])
    return pred_path, gold_path, gold.labels, pred_labels


def test_score_json(capsys, gold_and_pred):
    pred_path, gold_path, gold, pred = gold_and_pred
    assert main(["score", str(pred_path), str(gold_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"macro_f1", "micro_f1", "jaccard", "per_label"} <= set(result)
    expected = score(gold, pred)
    assert result["macro_f1"] == pytest.approx(expected["macro_f1"])
    assert result["micro_f1"] == pytest.approx(expected["micro_f1"])
    assert result["jaccard"] == pytest.approx(expected["jaccard"])
    assert list(result["per_label"]) == list(LABELS)
    for label in LABELS:
        for key in ("precision", "recall", "f1", "support"):
            assert result["per_label"][label][key] == pytest.approx(expected["per_label"][label][key])
    assert 0 < result["macro_f1"] < 1


def test_score_table(capsys, gold_and_pred):
    pred_path, gold_path, gold, pred = gold_and_pred
    assert main(["score", str(pred_path), str(gold_path)]) == 0
    out = capsys.readouterr().out
    assert f"macro-F1  {score(gold, pred)['macro_f1']:.4f}" in out


def test_score_gold_in_train_format(capsys, tmp_path, sample_dir):
    train = read_train(sample_dir / "train.csv")
    pred_labels = train.labels.copy()
    pred_labels[:, LABELS.index("joy")] = 0
    pred_path = tmp_path / "pred.csv"
    write_predictions(pred_path, train.ids, pred_labels)
    assert main(["score", str(pred_path), str(sample_dir / "train.csv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["macro_f1"] == pytest.approx(score(train.labels, pred_labels)["macro_f1"])
    assert result["per_label"]["joy"]["f1"] == 0.0
    assert result["per_label"]["anger"]["f1"] == 1.0


def test_score_missing_id(capsys, tmp_path, sample_dir):
    gold = read_label_file(sample_dir / "test_labels.csv")
    pred_path = tmp_path / "pred.csv"
    write_predictions(pred_path, gold.ids[1:], gold.labels[1:])
    assert main(["score", str(pred_path), str(sample_dir / "test_labels.csv")]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert gold.ids[0] in line
    assert str(pred_path) in line


def test_score_extra_id_subprocess(tmp_path, sample_dir):
    gold = read_label_file(sample_dir / "test_labels.csv")
    pred_path = tmp_path / "pred.csv"
    write_predictions(pred_path, [*gold.ids, "extra-id"], np.vstack([gold.labels, np.zeros((1, 11), int)]))
    result = run_cli(["score", str(pred_path), str(sample_dir / "test_labels.csv"), "--json"], cwd=tmp_path)
    assert result.returncode == 2
    assert "extra-id" in assert_one_line_error(result.stderr)
    assert result.stdout == ""


def test_score_gold_without_labels(capsys, tmp_path, sample_dir):
    pred_path = tmp_path / "pred.csv"
    test = read_test(sample_dir / "test.csv")
    write_predictions(pred_path, test.ids, np.zeros((len(test), 11), int))
    assert main(["score", str(pred_path), str(sample_dir / "test.csv")]) == 2
    assert_one_line_error(capsys.readouterr().err)


# --- export -------------------------------------------------------------------------------------


def test_export(capsys, tmp_path, sample_dir):
    test_path = sample_dir / "test.csv"
    test = read_test(test_path)
    labels = (np.random.default_rng(3).random((len(test), 11)) < 0.3).astype(int)
    order = np.arange(len(test))[::-1]
    pred_path = tmp_path / "pred.csv"
    write_predictions(pred_path, [test.ids[i] for i in order], labels[order])
    out = tmp_path / "submission.csv"
    assert main(["export", str(pred_path), "--test", str(test_path), "--out", str(out)]) == 0
    assert "80 rows" in capsys.readouterr().out
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == LABEL_HEADER
    assert [row[0] for row in rows[1:]] == test.ids
    assert [[int(v) for v in row[1:]] for row in rows[1:]] == labels.tolist()


def test_export_missing_id(capsys, tmp_path, sample_dir):
    test_path = sample_dir / "test.csv"
    test = read_test(test_path)
    pred_path = tmp_path / "pred.csv"
    write_predictions(pred_path, test.ids[:-1], np.zeros((len(test) - 1, 11), int))
    out = tmp_path / "submission.csv"
    assert main(["export", str(pred_path), "--test", str(test_path), "--out", str(out)]) == 2
    assert test.ids[-1] in assert_one_line_error(capsys.readouterr().err)
    assert not out.exists()


# --- run ----------------------------------------------------------------------------------------


def test_run_with_a_recipe_typo_subprocess(tmp_path):
    result = run_cli(["run", str(CPU_RECIPE), "train.learnig_rate=1"], cwd=tmp_path)
    assert result.returncode == 2
    line = assert_one_line_error(result.stderr)
    assert "train.learnig_rate" in line
    assert "train.learning_rate" in line
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing trained


def test_run_with_a_recipe_typo_relative_path(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    runs_before = sorted((REPO_ROOT / "runs").iterdir()) if (REPO_ROOT / "runs").is_dir() else []
    assert main(["run", "recipes/smollm2-135m-cpu.yaml", "train.learnig_rate=1"]) == 2
    line = assert_one_line_error(capsys.readouterr().err)
    assert "train.learnig_rate" in line
    runs_after = sorted((REPO_ROOT / "runs").iterdir()) if (REPO_ROOT / "runs").is_dir() else []
    assert runs_after == runs_before


def test_run_with_a_bad_value(capsys, tmp_path):
    assert main(["run", "smollm2-135m-cpu", "train.batch_size=abc", "--out", str(tmp_path / "r")]) == 2
    assert "train.batch_size" in assert_one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_run_with_a_data_folder_without_train_csv(capsys, tmp_path):
    assert main(["run", "smollm2-135m-cpu", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "train.csv" in assert_one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


def test_usage_errors_exit_2_with_one_line(capsys):
    assert main([]) == 2
    assert main(["export", "p.csv"]) == 2  # --test and --out are required
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("gen-emotion: error: ") for line in lines)
    assert "--test" in lines[1] and "see gen-emotion export --help" in lines[1]


# --- predict texts --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("texts") / "tfidf"
    assert main(["run", "recipes/tfidf-logreg.yaml", "--out", str(out)]) == 0
    return out


def test_predict_text_prints_one_line_of_labels_per_text(tfidf_run, capsys):
    capsys.readouterr()
    assert main(["predict", str(tfidf_run), "--text", "I love you so much", "--text", "this is disgusting"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line == "none" or set(line.split(", ")) <= set(LABELS)


def test_predict_reads_texts_from_standard_input(tfidf_run, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"first text\n\nthird, with a comma\n")))
    capsys.readouterr()
    assert main(["predict", str(tfidf_run), "--input", "-"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # the blank line is a text too
    assert main(["predict", str(tfidf_run), "--text", "x", "--input", "-"]) == 2
    assert main(["predict", str(tfidf_run), "--input", str(tfidf_run / "recipe.yaml")]) == 2  # a file needs --out


def test_the_command_starts_without_the_heavy_libraries() -> None:
    """Every command's process builds the parser (every command's module); scikit-learn (with SciPy and pandas),
    PyTorch, transformers and vLLM load where they are used, not with it (scikit-learn alone was seconds of each
    command's start-up)."""
    code = (
        "import json, sys\nfrom gen_emotion.cli.parser import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
        "    pass\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "usage: gen-emotion" in result.stdout
    loaded = set(json.loads(result.stderr.splitlines()[-1]))
    assert "gen_emotion" in loaded
    assert loaded.isdisjoint({"sklearn", "scipy", "pandas", "torch", "transformers", "vllm"}), loaded
