"""``runpod/entry.sh`` in local mode: the pod's steps run in a folder of this machine, with the environment
``gen-emotion launch`` gives a pod; plus the multi-GPU command line (dry run), the markers, the data step (with
credentials in its URL masked), and the image and SkyPilot files."""

from __future__ import annotations

import base64
import csv
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, SAMPLE_DIR

from gen_emotion.cli.parser import main
from gen_emotion.config.recipes import load_recipe, recipe_from_dict
from gen_emotion.core.redaction import SECRET_NAMES
from gen_emotion.data.formats import read_label_file
from gen_emotion.pods.plan import LaunchOptions, plan_launch

ENTRY = REPO_ROOT / "runpod" / "entry.sh"
CPU_RECIPE = REPO_ROOT / "recipes" / "smollm2-135m-cpu.yaml"
GEN_EMOTION_BIN = Path(sys.executable).with_name("gen-emotion")
TINY = ["train.max_steps=2", "data.eval_rows=0", "generate.batch_size=16"]
PASSWORD, SIGNATURE = "hunter2pw", "abc123sig"


def entry(args: list[str], env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run entry.sh with this venv's gen-emotion and no pod, secret or proxy variables but those in ``env``."""
    drop = (*SECRET_NAMES, "RUNPOD_POD_ID", "PUBLIC_KEY")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GEN_EMOTION_") and k not in drop and not k.lower().endswith("_proxy")
    }
    full_env = {**base, "GEN_EMOTION_BIN": str(GEN_EMOTION_BIN), **(env or {})}
    return subprocess.run(
        ["bash", str(ENTRY), *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=REPO_ROOT
    )


def marker_fields(path: Path) -> dict[str, str]:
    head = path.read_text().split("\n---", 1)[0]
    return dict(line.split("=", 1) for line in head.splitlines())


def pod_environment(overrides: list[str], name: str, gpus: int = 1) -> dict[str, str]:
    """The environment launch would give a pod for the CPU recipe (secrets left out)."""
    options = LaunchOptions(recipe=str(CPU_RECIPE), overrides=overrides, name=name, gpus=gpus, image="x/y:1")
    return plan_launch(options, {}).request["env"]


def dry_run_commands(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


def test_dry_run_multi_gpu_is_one_gen_emotion_command(tmp_path):
    """gen-emotion itself trains under accelerate and generates in a process of its own: one command; the tensor
    parallel size and the accelerate config are gen-emotion's to add (``multi_gpu``), as on any machine."""
    workspace = tmp_path / "ws"
    result = entry(["--local", str(workspace), "--dry-run", "--gpus", "4", "run", str(CPU_RECIPE), "train.max_steps=2"])
    run_dir = workspace / "runs" / "smollm2-135m-cpu"
    assert dry_run_commands(result) == [
        f"{GEN_EMOTION_BIN} run {CPU_RECIPE} train.max_steps=2 --out {run_dir} --gpus 4"
    ]
    assert "train_multi_gpu" not in result.stdout and "accelerate launch" not in result.stdout
    assert not workspace.exists()  # a dry run writes nothing


def test_dry_run_multi_gpu_cv_passes_the_gpus_and_the_config(tmp_path):
    args = ["--local", str(tmp_path), "--dry-run", "--gpus", "2", "--folds", "3", "cv", str(CPU_RECIPE)]
    (command,) = dry_run_commands(entry(args, {"GEN_EMOTION_ACCELERATE_CONFIG": "fsdp"}))
    assert command.startswith(f"{GEN_EMOTION_BIN} cv {CPU_RECIPE} --out ")
    assert command.endswith("--folds 3 --gpus 2 --accelerate-config fsdp")
    # An explicit tensor parallel size is kept; predict trains nothing and keeps the run's own tensor parallel size.
    (command,) = dry_run_commands(entry([*args[:-2], "cv", str(CPU_RECIPE), "generate.tensor_parallel_size=1"]))
    assert "generate.tensor_parallel_size=1 " in command and "tensor_parallel_size=2" not in command
    predict = ["--local", str(tmp_path), "--dry-run", "--gpus", "2", "--data", "/d/new.csv", "predict", "r"]
    (command,) = dry_run_commands(entry(predict))
    run_dir = tmp_path / "runs" / "r"
    assert command == f"{GEN_EMOTION_BIN} predict {run_dir} --input /d/new.csv --out {run_dir}/predictions/new.csv"
    refused = entry(["--local", str(tmp_path), "--dry-run", "--accelerate-config", "fsdp2", "run", str(CPU_RECIPE)])
    assert refused.returncode == 2 and "unknown accelerate config 'fsdp2'" in refused.stderr


def test_dry_run_takes_the_pod_environment_from_launch(tmp_path):
    env = pod_environment(["train.max_steps=3"], "pod-run", gpus=3)  # SmolLM2's 9 heads split over 3 GPUs
    assert env["GEN_EMOTION_ACCELERATE_CONFIG"] == "ddp"
    commands = dry_run_commands(entry(["--local", str(tmp_path / "ws"), "--dry-run"], env))
    recipe_file, run_dir = tmp_path / "ws" / "recipes" / "pod-run.yaml", tmp_path / "ws" / "runs" / "pod-run"
    assert commands == [f"{GEN_EMOTION_BIN} run {recipe_file} --out {run_dir} --gpus 3 --accelerate-config ddp"]
    assert "tensor_parallel_size: 3" in base64.b64decode(env["GEN_EMOTION_RECIPE_B64"]).decode()  # launch resolved it


def test_dry_run_of_a_classifier_runs_cv_with_its_folds(tmp_path):
    recipe = REPO_ROOT / "recipes" / "roberta-base.yaml"
    options = LaunchOptions(recipe=str(recipe), overrides=["train.epochs=1"], name="pod-cv", folds=3, image="x/y:1")
    env = plan_launch(options, {}).request["env"]
    commands = dry_run_commands(entry(["--local", str(tmp_path / "ws"), "--dry-run", "--data", str(SAMPLE_DIR)], env))
    recipe_file = tmp_path / "ws" / "recipes" / "pod-cv.yaml"
    data_dir = tmp_path / "ws" / "data" / "pod-cv"
    # The same RECIPE and --data/--out as run, plus --folds; one GPU: no --gpus.
    assert commands == [
        f"{GEN_EMOTION_BIN} cv {recipe_file} --data {data_dir} --out {tmp_path / 'ws' / 'runs' / 'pod-cv'} --folds 3"
    ]
    refused = entry(["--local", str(tmp_path / "ws"), "--dry-run", "--folds", "3", "run", str(CPU_RECIPE)])
    assert refused.returncode == 2 and "--folds (GEN_EMOTION_FOLDS) goes with the cv command" in refused.stderr


def test_failing_run_leaves_failed_with_status_and_log_tail(tmp_path):
    workspace = tmp_path / "ws"
    secret = "hf_entry-test-secret-42"
    args = ["--local", str(workspace), "run", str(CPU_RECIPE), f"train.{secret}=1"]
    result = entry(args, {"HF_TOKEN": secret})
    assert result.returncode == 2
    run_dir = workspace / "runs" / "smollm2-135m-cpu"
    failed = run_dir / "FAILED"
    assert failed.is_file() and not (run_dir / "DONE").exists()
    fields = marker_fields(failed)
    assert fields["exit_status"] == "2" and fields["command"] == "run"
    text = failed.read_text()
    assert "--- last 60 lines of entry.log ---" in text
    assert "gen-emotion: error:" in text and "unknown key 'train.***'" in text
    # The secret's value is redacted everywhere the run writes or prints.
    for output in (text, (run_dir / "entry.log").read_text(), result.stdout, result.stderr):
        assert secret not in output
    # A marker stops a rerun (a restarted pod must not pay for the same failure twice)...
    again = entry(args, {"HF_TOKEN": secret})
    assert again.returncode == 2 and "not running again" in again.stdout
    assert failed.read_text() == text
    # ...unless forced.
    forced = entry(["--force", *args], {"HF_TOKEN": secret})
    assert forced.returncode == 2 and marker_fields(failed)["exit_status"] == "2"


def test_every_secret_of_the_package_list_is_redacted_from_the_log(tmp_path):
    """entry.sh takes the secrets' names from gen_emotion.core.redaction (the one list), not a list of its own."""
    assert "HUGGING_FACE_HUB_TOKEN" not in ENTRY.read_text()
    secrets = {name: f"secret-of-{name.lower()}-42" for name in SECRET_NAMES}
    overrides = [f"train.{value}=1" for value in secrets.values()]
    result = entry(["--local", str(tmp_path), "run", str(CPU_RECIPE), *overrides], secrets)
    assert result.returncode == 2
    run_dir = tmp_path / "runs" / "smollm2-135m-cpu"
    log = (run_dir / "entry.log").read_text()
    assert "train.***=1" in log
    for output in (log, (run_dir / "FAILED").read_text(), result.stdout, result.stderr):
        assert not any(value in output for value in secrets.values())


def test_data_archive_is_unpacked_and_bad_data_fails(tmp_path):
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("train.csv", "test.csv"):
            tar.add(SAMPLE_DIR / name, arcname=f"kaggle/{name}")
    workspace = tmp_path / "ws"
    # A bad override fails the command after the data step, so nothing trains.
    result = entry(["--local", str(workspace), "--data", archive.as_uri(), "run", str(CPU_RECIPE), "train.bad=1"])
    assert result.returncode == 2
    unpacked = workspace / "data" / "smollm2-135m-cpu" / "unpacked" / "kaggle"
    assert (unpacked / "train.csv").is_file() and (unpacked / "test.csv").is_file()
    assert f"--data {unpacked}" in result.stdout

    missing = entry(["--local", str(tmp_path / "ws2"), "--data", str(tmp_path / "nope"), "run", str(CPU_RECIPE)])
    assert missing.returncode == 2
    failed = tmp_path / "ws2" / "runs" / "smollm2-135m-cpu" / "FAILED"
    assert "no such file or folder" in failed.read_text()


def test_unknown_command_and_missing_recipe(tmp_path):
    result = entry(["--local", str(tmp_path), "train", str(CPU_RECIPE)])
    assert result.returncode == 2 and "unknown command 'train'" in result.stderr
    result = entry(["--local", str(tmp_path), "run"])
    assert result.returncode == 2
    assert "no recipe" in (tmp_path / "runs" / "run" / "FAILED").read_text()


# --- credentials in the data URL --------------------------------------------------------------------------------


def assert_masked(*outputs: str) -> None:
    for output in outputs:
        assert PASSWORD not in output and SIGNATURE not in output


def test_a_dataset_id_from_launch_is_the_commands_data(tmp_path):
    """launch --data-id: the pod gives the id to run/cv as --data (datasets.load_dataset there), downloads nothing."""
    options = LaunchOptions(recipe=str(CPU_RECIPE), name="ge", image="x/y:1", data_id="owner/emotions", command="cv")
    env = plan_launch(options, {}).request["env"]
    workspace = tmp_path / "ws"
    result = entry(["--local", str(workspace), "--dry-run"], env={**env, "GEN_EMOTION_GPUS": "1"})
    [command] = dry_run_commands(result)
    assert command.startswith(f"{GEN_EMOTION_BIN} cv ") and " --data owner/emotions --out " in command
    assert "data: the dataset owner/emotions (datasets.load_dataset here)" in result.stdout
    both = entry(["--local", str(workspace), "--data", "https://127.0.0.1:9/x.tgz", "--data-id", "a/b", "run"])
    assert both.returncode == 2 and "--data and --data-id both given" in both.stderr
    predict = entry(["--local", str(workspace), "--data-id", "a/b", "--run-name", "r", "predict"])
    assert predict.returncode == 2 and "--data-id is for run and cv" in predict.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"https://user:{PASSWORD}@127.0.0.1:9/x.tgz?sig={SIGNATURE}", "https://***@127.0.0.1:9/x.tgz?***"),
        (f"https://user:p@{PASSWORD}@127.0.0.1:9/x.tgz", "https://***@127.0.0.1:9/x.tgz"),  # an @ in the password
        ("https://127.0.0.1:9/a@b/x.tgz", "https://127.0.0.1:9/a@b/x.tgz"),  # an @ in the path is no password
    ],
)
def test_dry_run_shows_the_data_url_masked(tmp_path, url, shown):
    result = entry(["--local", str(tmp_path), "--dry-run", "--data", url, "run", str(CPU_RECIPE)])
    assert result.returncode == 0, result.stderr
    assert f"data: {shown}\n" in result.stdout
    assert_masked(result.stdout, result.stderr)


def test_failed_download_is_masked_in_the_log_and_the_marker(tmp_path):
    url = f"https://user:{PASSWORD}@127.0.0.1:9/x.tgz?sig={SIGNATURE}"  # port 9 refuses at once
    result = entry(["--local", str(tmp_path), "--data", url, "run", str(CPU_RECIPE)])
    assert result.returncode == 2
    run_dir = tmp_path / "runs" / "smollm2-135m-cpu"
    failed = (run_dir / "FAILED").read_text()
    assert "entry: https://***@127.0.0.1:9/x.tgz?***: download failed:" in failed
    assert "Connection refused" in failed  # the host and port, not user:password@, were dialled
    assert_masked(result.stdout, result.stderr, failed, (run_dir / "entry.log").read_text())


class ArchiveServer(http.server.BaseHTTPRequestHandler):
    """Serves ``archive`` to requests with the basic credentials user:PASSWORD; records what it was sent."""

    archive = b""
    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        auth = self.headers.get("Authorization", "")
        self.seen.append((self.path, auth))
        if auth != "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode():
            self.send_error(401)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.archive)))
        self.end_headers()
        self.wfile.write(self.archive)

    def log_message(self, *args):
        pass


def sample_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("train.csv", "test.csv"):
            tar.add(SAMPLE_DIR / name, arcname=name)
    return buffer.getvalue()


def test_download_sends_the_urls_credentials_as_basic_auth(tmp_path, monkeypatch):
    monkeypatch.setattr(ArchiveServer, "archive", sample_archive())
    monkeypatch.setattr(ArchiveServer, "seen", [])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://user:{PASSWORD}@127.0.0.1:{server.server_port}/d.tar.gz?sig={SIGNATURE}"
        # A bad override fails the command after the data step, so nothing trains.
        result = entry(["--local", str(tmp_path), "--data", url, "run", str(CPU_RECIPE), "train.bad=1"])
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 2
    assert [path for path, _ in ArchiveServer.seen] == [f"/d.tar.gz?sig={SIGNATURE}"]
    unpacked = tmp_path / "data" / "smollm2-135m-cpu" / "unpacked"
    assert (unpacked / "train.csv").is_file() and f"--data {unpacked}" in result.stdout
    run_dir = tmp_path / "runs" / "smollm2-135m-cpu"
    assert "unknown key 'train.bad'" in (run_dir / "FAILED").read_text()
    assert_masked(result.stdout, result.stderr, (run_dir / "FAILED").read_text(), (run_dir / "entry.log").read_text())


def test_predict_writes_a_downloaded_files_predictions_into_the_finished_run(tmp_path, monkeypatch):
    """A pod's predict: the finished run of that name predicts a file from a URL into its own folder, with the
    file's own log and marker; the run's DONE stays as it was."""
    workspace, recipe = tmp_path / "ws", REPO_ROOT / "recipes" / "tfidf-logreg.yaml"
    trained = entry(["--local", str(workspace), "--data", str(SAMPLE_DIR), "run", str(recipe)])
    assert trained.returncode == 0, trained.stderr
    run_dir = workspace / "runs" / "tfidf-logreg"
    done = (run_dir / "DONE").read_text()
    monkeypatch.setattr(ArchiveServer, "archive", (SAMPLE_DIR / "test.csv").read_bytes())
    monkeypatch.setattr(ArchiveServer, "seen", [])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ArchiveServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://user:{PASSWORD}@127.0.0.1:{server.server_port}/in/new_tweets.csv?sig={SIGNATURE}"
        result = entry(["--local", str(workspace), "--data", url, "predict", str(recipe)])  # the run's name: run's
    finally:
        server.shutdown()
        server.server_close()
    folder = run_dir / "predictions"
    log, marker = folder / "new_tweets.log", folder / "new_tweets.DONE"
    assert result.returncode == 0, log.read_text()
    assert [path for path, _ in ArchiveServer.seen] == [f"/in/new_tweets.csv?sig={SIGNATURE}"]
    assert marker_fields(marker)["command"] == "predict" and (run_dir / "DONE").read_text() == done
    assert_masked(result.stdout, result.stderr, log.read_text(), marker.read_text())
    # what gen-emotion predict writes for the same file and run, row for row
    direct = tmp_path / "direct.csv"
    assert main(["predict", str(run_dir), "--input", str(SAMPLE_DIR / "test.csv"), "--out", str(direct)]) == 0
    assert (folder / "new_tweets.csv").read_text() == direct.read_text()
    assert len(read_label_file(folder / "new_tweets.csv").ids) == 80
    # a data folder is predicted by its test file
    by_folder = entry(["--local", str(workspace), "--data", str(SAMPLE_DIR), "predict", str(recipe)])
    assert by_folder.returncode == 0, by_folder.stderr
    assert (folder / "sample_data.csv").read_text() == direct.read_text()
    # a predict needs the file and a run of that name
    missing = entry(["--local", str(workspace), "predict", str(recipe)])
    assert missing.returncode == 2 and "predict needs --data FILE_OR_URL" in missing.stderr
    args = ["--local", str(workspace), "--data", str(SAMPLE_DIR / "test.csv"), "--run-name", "nope", "predict"]
    nope = entry(args)
    assert nope.returncode == 2 and f"no run folder {workspace / 'runs' / 'nope'}" in nope.stderr


@pytest.mark.slow
def test_local_pod_flow_end_to_end(tmp_path, small_sample_dir):
    """The pod's whole flow but the API call: launch's environment, entry.sh, a real (tiny) training run (on the
    sample's first 100 training and 24 test rows). It generates with transformers: the recipe's compiled vLLM engine
    took 3 of this test's 4 minutes on CPU, and is tested on its own (test_vllm_backend)."""
    overrides = [*TINY, "generate.backend=transformers"]
    env = pod_environment(overrides, "e2e")
    workspace = tmp_path / "ws"
    result = entry(["--local", str(workspace), "--data", small_sample_dir.as_uri()], env, timeout=1800)
    run_dir = workspace / "runs" / "e2e"
    assert result.returncode == 0, (run_dir / "entry.log").read_text()[-3000:]
    assert (run_dir / "DONE").is_file() and not (run_dir / "FAILED").exists()
    fields = marker_fields(run_dir / "DONE")
    assert fields["exit_status"] == "0" and fields["command"] == "run"
    with (run_dir / "submission.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 1 + 24
    # The pod ran exactly the recipe launch resolved, overrides included.
    sent = recipe_from_dict(yaml.safe_load(base64.b64decode(env["GEN_EMOTION_RECIPE_B64"])))
    assert sent == load_recipe(CPU_RECIPE, overrides)
    assert recipe_from_dict(yaml.safe_load((run_dir / "recipe.yaml").read_text())) == sent
    assert (run_dir / "entry.log").is_file() and (run_dir / "metrics.json").is_file()


# --- the image and SkyPilot files -------------------------------------------------------------------------


def test_dockerfile_has_cuda_the_gpu_extra_and_the_entry_point():
    text = (REPO_ROOT / "runpod" / "Dockerfile").read_text()
    assert "FROM ${CUDA_IMAGE}" in text and "nvidia/cuda:" in text
    assert 'pip install ".[gpu,pod,track,ray]"' in text and "deepspeed" in text
    assert "openssh-server" in text and "rsync" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/opt/gen-emotion/runpod/entry.sh"]' in text
    ignore = (REPO_ROOT / "runpod" / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1] == "*" and "!gen_emotion/" in ignore and "!runpod/" in ignore


def test_entry_script_installs_nothing():
    text = ENTRY.read_text()
    assert "pip install" not in text and "apt-get" not in text and "uv pip" not in text


def test_skypilot_task_runs_the_entry_script_over_all_gpus():
    task = yaml.safe_load((REPO_ROOT / "runpod" / "sky.yaml").read_text())
    assert set(task) >= {"resources", "envs", "setup", "run"}
    assert '".[gpu,track]"' in task["setup"]
    assert "runpod/entry.sh --local" in task["run"] and "SKYPILOT_NUM_GPUS_PER_NODE" in task["run"]
    assert not any(name in task["envs"] for name in ("HF_TOKEN", "WANDB_API_KEY"))
