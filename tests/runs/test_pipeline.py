"""End to end with the real SmolLM2-135M-Instruct on CPU: LoRA SFT for a few steps, constrained
generation with both backends, probabilities and thresholds, resume, predict and export. On the sample's first 100
training and 24 test rows (``small_sample_dir``): 10 held out, 34 texts generated per run.

Slow (minutes): marked ``slow`` and run in CI.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import faults
import numpy as np
import pytest

from gen_emotion.core.labels import LABELS, is_canonical
from gen_emotion.data.folds import split_fold
from gen_emotion.data.formats import read_label_file, read_test, read_train
from gen_emotion.generation.parsing import parse
from gen_emotion.runs.locks import file_lock_path
from gen_emotion.scoring.prediction_files import write_predictions

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "gen_emotion" / "sample_data"
SHARD = 8
"""Rows per saved shard of generations: the small sample's 24 test rows are three shards."""
CLI = [sys.executable, "-m", "gen_emotion.cli.parser"]
TINY = [
    "train.max_steps=4",
    "train.batch_size=8",
    "train.eval_steps=2",
    "train.save_steps=2",  # a checkpoint half way: test_run_killed_... resumes from it
    "train.logging_steps=1",
    "data.eval_rows=16",
    "generate.backend=transformers",
    "generate.batch_size=32",
    "generate.probabilities=true",  # branches, the recipe's (sampled: test_predictor, test_steps)
    f"generate.shard_size={SHARD}",
]

pytestmark = pytest.mark.slow


def run_cli(*args: str, check: bool = True, timeout: int = 1200) -> subprocess.CompletedProcess:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"gen-emotion {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def read_outputs(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["output"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_sample_dir: Path) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "smollm2"
    run_cli("run", "recipes/smollm2-135m-cpu.yaml", *TINY, "--data", str(small_sample_dir), "--out", str(run_dir))
    return run_dir


@pytest.fixture(scope="module")
def data(small_sample_dir: Path) -> Path:
    """The data folder ``trained_run`` was trained on."""
    return small_sample_dir


def test_run_writes_a_complete_run_folder(trained_run: Path, data: Path) -> None:
    for name in (
        "recipe.yaml",
        "metrics.json",
        "training.json",
        "val_predictions.csv",
        "test_predictions.csv",
        "submission.csv",
        "val_probs.csv",
        "test_probs.csv",
        "thresholds.json",
        "run.log",
    ):
        assert (trained_run / name).is_file(), name
    assert (trained_run / "adapter" / "adapter_config.json").is_file()
    assert not (trained_run / "checkpoints").exists()

    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["outputs"]["canonical_share"] == 1.0  # every generation is a string of the grammar
    assert metrics["training"]["steps"] == 4
    assert metrics["held_out"]["rows"] == 10  # fold 0 of 10 of the 100 rows
    assert set(metrics["held_out"]["per_label"]) == set(LABELS)
    assert 0.0 <= metrics["held_out"]["macro_f1"] <= 1.0
    probs = metrics["probabilities"]
    assert set(probs["thresholds"]) == set(LABELS)
    assert metrics["decision"] in ("greedy", "thresholds")

    # every test ID exactly once, in test order, integer 0/1 columns
    test = read_test(data / "test.csv")
    with (trained_run / "submission.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ID", *LABELS]
    assert [r[0] for r in rows[1:]] == test.ids
    assert all(v in ("0", "1") for r in rows[1:] for v in r[1:])

    # greedy outputs parse to themselves
    for output in read_outputs(trained_run / "test_predictions.csv"):
        assert is_canonical(output), output

    # branch probabilities: every label the greedy output writes has a share of its slot
    probs_rows = read_label_probs(trained_run / "test_probs.csv")
    assert probs_rows.shape == (24, 11) and ((probs_rows >= 0) & (probs_rows <= 1)).all()
    written = np.array([parse(output) for output in read_outputs(trained_run / "test_predictions.csv")])
    assert ((probs_rows > 0) | (written == 0)).all()


def read_label_probs(path: Path) -> np.ndarray:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return np.array([[float(row[label]) for label in LABELS] for row in reader])


def test_score_and_export_commands_agree_with_the_run(trained_run: Path, data: Path, tmp_path: Path) -> None:
    # gold: the held-out fold's rows (score refuses predictions that miss gold IDs)
    _, held_out = split_fold(read_train(data / "train.csv"), 0, 10, 42)
    gold = tmp_path / "gold.csv"
    write_predictions(gold, held_out.ids, held_out.labels)
    result = run_cli("score", str(trained_run / "val_predictions.csv"), str(gold), "--json")
    scored = json.loads(result.stdout)
    metrics = json.loads((trained_run / "metrics.json").read_text())
    if metrics["decision"] == "greedy":
        assert scored["macro_f1"] == pytest.approx(metrics["held_out"]["macro_f1"])
    else:
        assert scored["macro_f1"] == pytest.approx(metrics["probabilities"]["thresholded_macro_f1_in_sample"])
    out = tmp_path / "submission.csv"
    run_cli("export", str(trained_run / "test_predictions.csv"), "--test", str(data / "test.csv"), "--out", str(out))
    assert out.read_text() == (trained_run / "submission.csv").read_text()


def test_rerun_resumes_without_training_and_gives_the_same_predictions(trained_run: Path, data: Path) -> None:
    before = (trained_run / "test_predictions.csv").read_text()
    (trained_run / "test_predictions.csv").unlink()
    (trained_run / "submission.csv").unlink()
    result = run_cli(*run_command(trained_run, data)[len(CLI) :])
    assert "holds a finished training: not training again" in result.stderr
    assert (trained_run / "test_predictions.csv").read_text() == before


def test_resuming_a_run_with_another_recipe_is_refused(trained_run: Path, data: Path) -> None:
    result = run_cli(*run_command(trained_run, data)[len(CLI) :], "train.max_steps=5", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "different recipe" in result.stderr


def run_command(out: Path, data: Path) -> list[str]:
    """``run`` with TINY on ``data`` (killed as a process group: its fit and generation steps are its children)."""
    return [*CLI, "run", "recipes/smollm2-135m-cpu.yaml", *TINY, "--data", str(data), "--out", str(out)]


def cut_mid_save(checkpoint: Path, cut: Path) -> None:
    """A copy of ``checkpoint`` as a save killed half way leaves it: half its weights, no trainer state."""
    cut.mkdir()
    for path in checkpoint.iterdir():
        if path.is_file() and path.name != "trainer_state.json":
            data = path.read_bytes()
            (cut / path.name).write_bytes(data[: len(data) // 2] if path.suffix == ".safetensors" else data)


def test_run_killed_in_training_and_in_generation_resumes_to_the_uninterrupted_run(
    trained_run: Path, data: Path, tmp_path: Path
) -> None:
    """Killed once its first checkpoint is saved (with a later checkpoint cut mid-save beside it), then once its
    first generation shard is saved, the rerun finishes with the uninterrupted run's adapter and files."""
    out = tmp_path / "killed"
    checkpoints = out / "checkpoints"
    faults.kill_when(
        run_command(out, data), lambda: faults.whole_json(checkpoints / "checkpoint-2" / "trainer_state.json"), "step 2"
    )
    assert not (out / "training.json").exists(), "killed during training"
    cut_mid_save(checkpoints / "checkpoint-2", checkpoints / "checkpoint-3")

    shards = out / "shards"
    faults.kill_when(run_command(out, data), lambda: any(shards.rglob("shard-*.json")), "its first shard")
    log = (out / "run.log").read_text()
    assert "checkpoint-3 was cut mid-save: skipped" in log and "resuming training from" in log
    assert (out / "training.json").is_file() and not (out / "test_predictions.csv").exists()

    run_cli(*run_command(out, data)[len(CLI) :])
    adapter = "adapter/adapter_model.safetensors"
    assert (out / adapter).read_bytes() == (trained_run / adapter).read_bytes()
    for name in ("val_predictions.csv", "test_predictions.csv", "submission.csv", "test_probs.csv"):
        assert (out / name).read_text() == (trained_run / name).read_text(), name
    assert not checkpoints.exists()


def long_ids_from_the_second_shard(test: Path, path: Path) -> Path:
    """``test`` with 2,500-character IDs from its second shard on: the first shard of saved generations stays under
    16 KiB, the second does not."""
    with test.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    for number, row in enumerate(rows[1:]):
        if number >= SHARD:
            row[0] = f"{row[0]}-" + "x" * 2500
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_predict_out_of_room_and_killed_resumes_to_the_uninterrupted_result(
    trained_run: Path, data: Path, tmp_path: Path
) -> None:
    """A disk that fills while the second shard of generations is saved is one line and keeps the first; the rerun,
    killed at a seeded random moment, and the next one resume from the saved shards to the uninterrupted output."""
    inputs = long_ids_from_the_second_shard(data / "test.csv", tmp_path / "inputs.csv")

    def predict(out: Path) -> list[str]:
        return [*CLI, "predict", str(trained_run), "--input", str(inputs), "--out", str(out)]

    full = tmp_path / "full.csv"
    locked, unlocked = faults.timed(predict(full), lambda: file_lock_path(full).is_file())

    out = tmp_path / "out.csv"
    shards = tmp_path / ".out.csv.shards"
    room = subprocess.run(
        predict(out), cwd=REPO, capture_output=True, text=True, preexec_fn=lambda: faults.limit_file_size(16 << 10)
    )
    assert room.returncode == 2 and "Traceback" not in room.stderr, room.stderr[-2000:]
    errors = [line for line in room.stderr.splitlines() if line.startswith("gen-emotion: error: ")]
    assert len(errors) == 1 and "shard-00001.json: cannot write (File too large)" in errors[0], errors
    left = faults.files_in(tmp_path)
    assert [Path(name).name for name in left if ".out.csv.shards" in name] == ["shard-00000.json"], left
    assert not out.exists() and faults.whole_json(next(shards.rglob("shard-00000.json")))

    # the resumed prediction generates two shards of three: its kill moment is drawn from the first two thirds
    moment = random.Random("generation-predict-20261206").uniform(locked, locked + (unlocked - locked) * 2 / 3)
    killed = faults.kill_after(predict(out), moment)
    print(
        f"killed: {killed} at {moment:.1f} s (writing {locked:.1f}-{unlocked:.1f} s), left {faults.files_in(tmp_path)}"
    )
    assert not out.exists() or not killed

    run_cli("predict", str(trained_run), "--input", str(inputs), "--out", str(out))
    assert out.read_text() == full.read_text()
    assert out.with_name("out_probs.csv").read_text() == full.with_name("full_probs.csv").read_text()
    assert len(read_label_file(out).ids) == 24
    assert not shards.exists()  # removed once the prediction is written


def test_predict_refuses_overrides_of_training_settings(trained_run: Path, tmp_path: Path) -> None:
    result = run_cli(
        "predict",
        str(trained_run),
        "train.max_steps=9",
        "--input",
        str(SAMPLE / "test.csv"),
        "--out",
        str(tmp_path / "x.csv"),
        check=False,
    )
    assert result.returncode == 2 and "generate.* overrides only" in result.stderr


def test_predicting_the_test_file_reproduces_the_runs_submission_and_probabilities(
    trained_run: Path, data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "test.csv"
    run_cli("predict", str(trained_run), "--input", str(data / "test.csv"), "--out", str(out), "--probs")
    assert read_label_file(out).labels.tolist() == read_label_file(trained_run / "submission.csv").labels.tolist()
    assert (
        np.abs(read_label_probs(tmp_path / "test_probs.csv") - read_label_probs(trained_run / "test_probs.csv")).max()
        <= 1e-5
    )
    texts = tmp_path / "mine.txt"
    texts.write_text("I can't believe they cancelled the show, I'm furious\n\nwhat a lovely morning with you\n")
    result = run_cli("predict", str(trained_run), "--input", str(texts), "--out", str(tmp_path / "mine.csv"))
    assert read_label_file(tmp_path / "mine.csv").ids == ["1", "2", "3"]  # the blank line is a text too
    assert "the run folder's decision" in result.stdout


def test_a_generation_cv_with_branch_probabilities_predicts_as_it_submitted(tmp_path: Path) -> None:
    """A 2-fold cv of SmolLM2 with branch probabilities: its folder (``predict``) and its export (``EmotionModel``)
    predict the test rows it cross-validated exactly as its submission, the fold models loaded once in one process
    for every call."""
    from gen_emotion.scoring.prediction_files import write_table
    from gen_emotion.serving.notebook import EmotionModel

    cv_dir = tmp_path / "cv"
    folds = ["--folds", "2", "--rows", "16"]
    run_cli("cv", "recipes/smollm2-135m-cpu.yaml", *TINY, "data.eval_rows=4", *folds, "--out", str(cv_dir))
    test = read_test(SAMPLE / "test.csv")
    rows = tmp_path / "rows.csv"
    write_table(rows, ["ID", "Tweet"], zip(test.ids[:16], test.texts[:16]))
    exported = tmp_path / "model"
    run_cli("export-model", str(cv_dir), "--out", str(exported))
    submitted = read_label_file(cv_dir / "submission.csv").labels
    submitted_probs = read_label_probs(cv_dir / "test_probs.csv")
    out = tmp_path / "predicted.csv"
    run_cli("predict", str(cv_dir), "--input", str(rows), "--out", str(out))
    assert read_label_file(out).labels.tolist() == submitted.tolist()
    assert np.abs(read_label_probs(tmp_path / "predicted_probs.csv") - submitted_probs).max() <= 1e-5
    with EmotionModel.load(exported) as model:
        first = model.predict(test.texts[:16])
        session = model.predictor.models.session.process
        again = model.predict(test.texts[:3])
        assert model.predictor.models.session.process is session and session.poll() is None  # still loaded
    assert session.poll() is not None  # closed with the with block
    assert first.labels.tolist() == submitted.tolist() and np.abs(first.probs - submitted_probs).max() <= 1e-5
    # a batch of 3 against one of 16: the same labels, probabilities within the files' rounding
    assert np.array_equal(first.labels[:3], again.labels) and np.abs(first.probs[:3] - again.probs).max() <= 1e-5


def test_vllm_serving_the_adapter_parses_as_transformers_on_greedy_decoding(
    trained_run: Path, data: Path, tmp_path: Path
) -> None:
    """The test file predicted by the transformers backend (the merged copy) and by vLLM serving the run's adapter
    as a ``LoRARequest`` (``generate.vllm_lora: true``, the 14B recipe's setting; vLLM on a merged copy:
    test_run_end_to_end_on_the_real_templates): every greedy output in the grammar and the same as the other's.
    fp32 on both sides: a 4-step model has near-ties that bf16 rounding in different kernels can flip."""
    hf, vl = tmp_path / "hf.csv", tmp_path / "vllm.csv"
    fp32, test = ["generate.dtype=float32"], str(data / "test.csv")
    run_cli("predict", str(trained_run), *fp32, "--input", test, "--out", str(hf))
    lora = [*fp32, "generate.vllm_lora=true", "generate.vllm_compile=false"]
    run_cli("predict", str(trained_run), *lora, "--input", test, "--out", str(vl), "--backend", "vllm")
    hf_out, vl_out = read_outputs(hf), read_outputs(vl)
    assert len(vl_out) == 24 and all(is_canonical(o) for o in vl_out)
    assert vl_out == hf_out, [(a, b) for a, b in zip(hf_out, vl_out) if a != b]


@pytest.mark.parametrize(
    ("fixture", "template", "backend"),
    [
        ("llama_instruct_dir", "default", "vllm"),
        ("qwen_instruct_dir", "default", "transformers"),
        ("qwen_base_dir", "plain", "vllm"),
    ],
)
def test_run_end_to_end_on_the_real_templates(fixture, template, backend, request, data: Path, tmp_path: Path) -> None:
    """``gen-emotion run`` with a few steps on tiny models of the real families: every output in the grammar, the
    prompt ids of training and of both backends the same (``inspect``), one BOS, the date pinned in the saved
    tokenizer. (A run predicting with the other backend: test_vllm_serving_the_adapter_parses_as_transformers.)"""
    model = request.getfixturevalue(fixture)
    run_dir = tmp_path / "run"
    overrides = [
        f"model.name={model}",
        f"prompt.template={template}",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.max_length=192",
        "data.eval_rows=0",
        "generate.batch_size=32",
        "generate.vllm_compile=false",  # eager vLLM: a 2-3.5x shorter engine start (compiled: test_vllm_backend)
    ]
    run_cli(
        "run",
        "recipes/smollm2-135m-cpu.yaml",
        *overrides,
        "--backend",
        backend,
        "--data",
        str(data),
        "--out",
        str(run_dir),
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["outputs"]["canonical_share"] == 1.0 and metrics["backend"] == backend
    log = (run_dir / "run.log").read_text()
    assert "predict step: trainer modules loaded in this process: none" in log
    inspected = run_cli("inspect", "recipes/smollm2-135m-cpu.yaml", *overrides, "--rows", "3", "--json")
    for line in inspected.stdout.splitlines():
        row = json.loads(line)
        assert row["train_prompt_ids"] == row["transformers_prompt_ids"] == row["vllm_prompt_ids"]
        assert row["leading_bos"] == (1 if fixture == "llama_instruct_dir" else 0) and row["problems"] == []
    if fixture == "llama_instruct_dir":
        from transformers import AutoTokenizer

        saved = AutoTokenizer.from_pretrained(run_dir / "adapter").chat_template
        assert "set date_string = '26 Jul 2024'" in saved
    assert all(is_canonical(o) for o in read_outputs(run_dir / "test_predictions.csv"))
