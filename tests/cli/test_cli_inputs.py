"""Bad and odd input across the commands, the way a user gives it: every case ends with exit status 2 and one
line ``gen-emotion: error: ...`` naming the file, row or setting (never a traceback), or, for the odd-but-valid
ones, succeeds. Run in-process (``parser.main``), except the stream cases, which need a real standard input/output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LABEL_HEADER, REPO_ROOT, SAMPLE_DIR, TRAIN_HEADER, onehot, write_rows

from gen_emotion.cli.parser import main

CPU = "recipes/smollm2-135m-cpu.yaml"
TFIDF = "recipes/tfidf-logreg.yaml"


def one_error(capsys, argv: list[str], match: str) -> str:
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gen-emotion: error: "), err
    assert "Traceback" not in err and match in lines[0], lines[0]
    return lines[0]


# --- recipes: one place, before anything is written ----------------------------------------------------------

RECIPE_CASES = [
    ("lora.r=-1", "lora.r must be at least 1"),
    ("train.batch_size=0", "train.batch_size must be at least 1"),
    ("train.learning_rate=-3", "train.learning_rate must be above 0"),
    ("data.fold=99", "data.fold must be in 0..9"),
    ("data.folds=1", "data.folds must be at least 2"),
    ("prompt.template=nope", "prompt.template: prompt template 'nope'"),
    ("generate.gpu_memory_utilization=1.5", "generate.gpu_memory_utilization must be at most 1"),
    ("task=regress", "task must be one of generate, classify, tfidf"),
    ("name=../x", "name '../x' must be letters"),
    ("train.optim=adamw_tourch", "train.optim must be one of"),
    ("train.max_steps=abc", "train.max_steps must be int"),
    ("train.learning_rate=.nan", "train.learning_rate must be float"),
    ("train.save_steps=7", "must be a multiple of train.eval_steps"),
    ("generate.probabilities=true generate.probability_source=samples generate.num_samples=1", "at least 2"),
    ("generate.probabilities=true generate.probability_source=branches prompt.target_format=python_list", "labels"),
    ("model.dtype=float64", "model.dtype must be one of"),
    ("lora.target_modules=[]", "lora.target_modules must be a non-empty list"),
    ("train.lr=1", "unknown key 'train.lr'"),
    ("trainn.epochs=1", "unknown key 'trainn'"),
    ("model.dtype=float32 model.load_in_4bit=true", "16-bit model.dtype"),
    ("generate.quantized_base=true", "generate.quantized_base serves a QLoRA adapter on its 4-bit base"),
    ("model.load_in_4bit=true model.dtype=auto generate.quantized_base=true", "needs generate.vllm_lora: true"),
    ("train.max_steps", "must look like section.key=value"),
]


@pytest.mark.parametrize(("overrides", "expected"), RECIPE_CASES, ids=[case[0] for case in RECIPE_CASES])
@pytest.mark.parametrize("command", ["show", "run", "launch"])
def test_bad_recipe_values_stop_before_anything_is_written(overrides, expected, command, capsys, tmp_path):
    argv = [command, CPU, *overrides.split()]
    if command == "run":
        argv += ["--out", str(tmp_path / "run")]
    if command == "launch":
        argv += ["--dry-run"]
    one_error(capsys, argv, expected)
    assert not (tmp_path / "run").exists()


def write_recipe(tmp_path: Path, text: bytes) -> str:
    path = tmp_path / "mine.yaml"
    path.write_bytes(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"train:\n  epochs: 1\n  epochs: 2\n", "line 3: key 'epochs' is given twice (first on line 2)"),
        (b"description: caf\xe9\n", "line 1: not UTF-8 (byte 0xe9)"),
        (b"train: [1, 2\n", "not valid YAML"),
        (b"- a\n- b\n", "a recipe must be a mapping of sections"),
        (b"train: 3\n", "train must be a mapping"),
        (b"model:\n  name: x\nhf_token: abc\n", "recipes must not hold HF_TOKEN"),
    ],
)
def test_bad_recipe_files(text, match, capsys, tmp_path):
    one_error(capsys, ["show", write_recipe(tmp_path, text)], match)


def test_show_prints_the_resolved_recipe_with_help(capsys):
    assert main(["show", CPU, "train.max_steps=7"]) == 0
    out = capsys.readouterr().out
    assert "max_steps: 7" in out and "# stop after this many optimiser steps" in out
    assert "[>= 1]" in out and "[one of labels, python_list]" in out


def test_overrides_are_taken_after_the_flags_too(capsys, tmp_path):
    assert main(["run", TFIDF, "--data", str(SAMPLE_DIR), "--out", str(tmp_path / "r"), "data.seed=3"]) == 0
    assert "seed: 3" in (tmp_path / "r" / "recipe.yaml").read_text()
    capsys.readouterr()
    one_error(capsys, ["show", CPU, "--out", "x"], "unrecognized arguments")


# --- data files -------------------------------------------------------------------------------------------------


def test_run_and_cv_refuse_a_data_folder_without_train_csv(capsys, tmp_path):
    one_error(capsys, ["run", TFIDF, "--data", str(tmp_path), "--out", str(tmp_path / "r")], "no train file")
    one_error(capsys, ["cv", TFIDF, "--data", str(tmp_path), "--folds", "1"], "no train file")
    one_error(capsys, ["run", TFIDF, "--data", str(tmp_path / "nope")], "not a folder")
    (tmp_path / "train.csv").write_text("x")
    (tmp_path / "train.jsonl").write_text("{}")
    one_error(capsys, ["run", TFIDF, "--data", str(tmp_path)], "keep one train file")
    one_error(capsys, ["cv", TFIDF, "--folds", "1"], "--folds must be at least 2")
    one_error(capsys, ["cv", TFIDF, "--rows", "1", "--out", str(tmp_path / "c")], "--rows must be at least 2")
    one_error(capsys, ["run", TFIDF, "--gpus", "0"], "--gpus must be at least 1")
    one_error(capsys, ["run", TFIDF, "--gpus", "2"], "trains in one process on one GPU")  # the plan before the GPUs
    one_error(capsys, ["run", TFIDF, "--accelerate-config", "nope"], "accelerate config 'nope'")
    one_error(capsys, ["run", TFIDF, "--backend", "vllm"], "--backend is for generative recipes")


def test_a_tracker_or_flash_attention_missing_where_it_trains_is_refused_first(capsys, tmp_path, monkeypatch):
    from gen_emotion.models.hardware import module_importable

    monkeypatch.setitem(sys.modules, "wandb", None)  # an import this Python refuses: W&B is not installed here
    out = tmp_path / "run"
    for command in (["run", CPU, "--out", str(out)], ["cv", CPU, "--folds", "2", "--out", str(out)]):
        one_error(capsys, [*command, "train.report_to=[wandb]"], 'no wandb: install the trackers there (pip install "')
        if not (module_importable("flash_attn") or module_importable("kernels")):
            one_error(
                capsys, [*command, "model.attn_implementation=flash_attention_2"], "use model.attn_implementation"
            )
    one_error(capsys, ["run", TFIDF, "train.report_to=[wandb]", "--out", str(out)], "this Python has no wandb")
    assert not out.exists()
    # launch, dry run too, asks the pod image, which has every tracker (the track extra) but no flash-attn
    llama = "recipes/llama-3.2-3b-instruct-lora.yaml"
    one_error(capsys, ["launch", llama, "model.attn_implementation=flash_attention_2", "--dry-run"], "=sdpa")


def test_check_reports_bad_rows_by_record(capsys, tmp_path):
    rows = [["1", "fine", *onehot("joy")], ["2", "a quoted\nnewline", *onehot()], ["3", "bad", *([2] + [0] * 10)]]
    path = write_rows(tmp_path / "train.csv", TRAIN_HEADER, rows)
    one_error(capsys, ["check", str(path)], "row 4 (line 5): label 'anger' is '2'")
    one_error(capsys, ["check", str(tmp_path)], "")
    one_error(capsys, ["check", str(tmp_path / "missing.csv")], "no such file")


# --- outputs ----------------------------------------------------------------------------------------------------


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    test = SAMPLE_DIR / "test.csv"
    ids = [line.split(",")[0] for line in test.read_text().splitlines()[1:]]
    return write_rows(tmp_path / "pred.csv", LABEL_HEADER, [[i, *onehot("joy")] for i in ids])


@pytest.mark.parametrize("where", ["folder", "under_a_file", "dev_full"])
def test_export_out_that_cannot_be_written(where, predictions, capsys, tmp_path):
    if where == "folder":
        out, match = tmp_path, "is a folder"
    elif where == "under_a_file":
        (tmp_path / "plain").write_text("x")
        out, match = tmp_path / "plain" / "sub.csv", "a file is in the way"
    else:
        out, match = Path("/dev/full"), "No space left on device"
    one_error(capsys, ["export", str(predictions), "--test", str(SAMPLE_DIR / "test.csv"), "--out", str(out)], match)
    assert not list(tmp_path.glob(".*.tmp"))  # nothing left behind


def test_export_through_a_symlink_writes_its_target(predictions, capsys, tmp_path):
    target = tmp_path / "real.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert main(["export", str(predictions), "--test", str(SAMPLE_DIR / "test.csv"), "--out", str(link)]) == 0
    assert link.is_symlink() and target.read_text().startswith("ID,anger")


# --- run folders written by other versions, or damaged ------------------------------------------------------


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv") / "tfidf"
    assert main(["cv", TFIDF, "--folds", "2", "--rows", "60", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        ("not json", "damaged, not valid JSON"),
        ("[1, 2]", "damaged, holds list"),
        ('{"macro_f1": "high"}', "damaged: macro_f1 must be a number"),
        ("per_label", "damaged: per_label must be a mapping"),
    ],
)
@pytest.mark.parametrize("command", ["ensemble", "report"])
def test_damaged_oof_metrics_is_named(damage, match, command, cv_run, capsys, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(cv_run, copy)
    metrics = copy / "oof_metrics.json"
    if damage == "per_label":
        values = json.loads(metrics.read_text())
        values["per_label"] = [0.5] * 11
        damage = json.dumps(values)
    metrics.write_text(damage)
    one_error(capsys, [command, str(cv_run), str(copy), "--out", str(tmp_path / "out")], "oof_metrics.json")
    one_error(capsys, [command, str(cv_run), str(copy), "--out", str(tmp_path / "out")], match)


def test_ensemble_and_report_out_under_a_file(cv_run, capsys, tmp_path):
    (tmp_path / "plain").write_text("x")
    for command in ("ensemble", "report"):
        one_error(capsys, [command, str(cv_run), str(cv_run), "--out", str(tmp_path / "plain" / "o")], "in the way")


@pytest.fixture(scope="module")
def tfidf_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "tfidf"
    assert main(["run", TFIDF, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("file", "content", "match"),
    [
        ("recipe.yaml", b"- 1\n", "damaged, holds list"),
        ("recipe.yaml", b"name: caf\xe9\n", "damaged, not readable YAML"),
        ("metrics.json", b"{", "damaged, not valid JSON"),
        ("thresholds.json", b'{"anger": 0.5}', "thresholds.json: damaged"),
    ],
)
def test_predict_names_the_damaged_file(file, content, match, tfidf_run, capsys, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tfidf_run, copy)
    (copy / file).write_bytes(content)
    metrics = json.loads((tfidf_run / "metrics.json").read_text())
    if file == "thresholds.json" and metrics["decision"] != "thresholds":
        values = {**metrics, "decision": "thresholds"}
        (copy / "metrics.json").write_text(json.dumps(values))
    argv = ["predict", str(copy), "--input", str(SAMPLE_DIR / "test.csv"), "--out", str(tmp_path / "p.csv")]
    one_error(capsys, argv, match)


def test_predict_bad_inputs(tfidf_run, capsys, tmp_path):
    out = str(tmp_path / "p.csv")
    one_error(
        capsys, ["predict", str(tmp_path), "--input", str(SAMPLE_DIR / "test.csv"), "--out", out], "not a trained"
    )
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\n")
    one_error(capsys, ["predict", str(tfidf_run), "--input", str(tmp_path / "bad.txt"), "--out", out], "UTF-8")
    one_error(capsys, ["predict", str(tfidf_run), "--input", str(tmp_path / "none.csv"), "--out", out], "no such")
    one_error(
        capsys, ["predict", str(tfidf_run), "--input", str(SAMPLE_DIR / "test.csv"), "--out", str(tmp_path)], "folder"
    )
    one_error(
        capsys,
        ["predict", str(tfidf_run), "--backend", "vllm", "--input", str(SAMPLE_DIR / "test.csv"), "--out", out],
        "a tfidf model takes no --backend or generate.* overrides",
    )


# --- streams and signals (real processes) ---------------------------------------------------------------------


def cli(*args: str, stdin: bytes = b"", stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    command = [sys.executable, "-m", "gen_emotion.cli.parser", *args]
    return subprocess.run(command, input=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT)


def test_parse_names_the_line_of_invalid_utf8():
    result = cli("parse", stdin=b"anger\n\xff joy\n")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "gen-emotion: error: standard input: line 2: not valid UTF-8 (byte 0xff); give UTF-8 text"
    )


def test_parse_into_a_closed_pipe_stops_quietly():
    reader = subprocess.Popen(["head", "-n", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.run(
        [sys.executable, "-m", "gen_emotion.cli.parser", "parse"],
        input=b"joy\n" * 200000,
        stdout=reader.stdin,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    reader.stdin.close()
    assert reader.stdout.read().decode().startswith("anger,")
    reader.wait()
    assert writer.returncode == 141 and writer.stderr == b""


def test_standard_output_on_a_full_disk_is_one_line():
    with open("/dev/full", "wb") as full:
        result = cli("parse", stdin=b"joy\n", stdout=full)
    assert result.returncode == 2
    assert result.stderr.decode().strip() == (
        "gen-emotion: error: cannot write to standard output (No space left on device)"
    )


def test_ctrl_c_while_the_command_is_still_importing_is_one_line():
    # The entry point's first act: a SIGINT that arrives before any command runs (here, at once) ends quietly.
    code = "import gen_emotion.cli.console, os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(30)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO_ROOT, timeout=60)
    assert (result.returncode, result.stderr.decode()) == (130, "gen-emotion: interrupted\n")


def test_ctrl_c_inside_a_command_is_one_line():
    console = Path(sys.executable).with_name("gen-emotion")
    command = [str(console)] if console.exists() else [sys.executable, "-m", "gen_emotion"]
    process = subprocess.Popen(command + ["parse"], stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    time.sleep(2.0)  # parse is waiting on its standard input by then
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err.decode()) == (130, "gen-emotion: interrupted\n")


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.decode().strip().startswith("gen-emotion 0.")
