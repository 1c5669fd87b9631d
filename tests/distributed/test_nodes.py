"""Several machines (``gen_emotion.distributed.nodes``, ``runpod/sky-cluster.yaml``): the commands each SkyPilot machine
runs for cv and predict over Ray and for one training over every machine (dry runs), the accelerate command of a
training over several machines, and the YAML's own ``run`` section, run by bash as SkyPilot runs it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
import yaml
from conftest import REPO_ROOT

from gen_emotion.cli.parser import main as cli
from gen_emotion.core.errors import GenEmotionError
from gen_emotion.distributed.nodes import main
from gen_emotion.runs.steps import WORKER, Launcher, Machines

YAML = REPO_ROOT / "runpod" / "sky-cluster.yaml"


def skypilot(rank: int, gpus: int = 4) -> dict[str, str]:
    """What SkyPilot gives each machine of a 2-machine cluster."""
    return {
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2\n",
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NUM_GPUS_PER_NODE": str(gpus),
    }


def commands(argv: list[str], env: dict[str, str], capsys) -> list[list[str]]:
    """The commands a dry run prints (``+ ...``), split as the shell would."""
    assert main([*argv, "--dry-run"], env) == 0
    lines = capsys.readouterr().out.splitlines()
    return [shlex.split(line[2:].split("   #")[0]) for line in lines if line.startswith("+ ")]


def test_cv_and_predict_start_ray_over_the_machines_and_the_head_runs_the_job(capsys):
    cv = ["cv", "recipes/r.yaml", "train.epochs=2", "--data", "d", "--out", "/shared/runs/r", "--folds", "5"]
    head = commands(cv, skypilot(0), capsys)
    assert head[0] == ["ray", "start", "--head", "--port", "6379", "--disable-usage-stats"]
    assert head[1][:3] == ["gen-emotion", "cv", "recipes/r.yaml"] and "train.epochs=2" in head[1]
    job = " ".join(head[1])
    assert "--gpus 1 --parallel-folds 8 --ray-address 10.0.0.1:6379" in job  # 2 machines x 4 GPUs, 1 a fold
    assert "--out /shared/runs/r --folds 5" in job and head[2] == ["ray", "stop"]
    other = commands(cv, skypilot(1), capsys)
    assert other == [["ray", "start", "--address", "10.0.0.1:6379", "--disable-usage-stats"]]
    assert "--parallel-folds 4" in " ".join(commands([*cv, "--gpus-per-fold", "2"], skypilot(0), capsys)[1])
    assert "--parallel-folds 2" in " ".join(commands(cv, skypilot(0, gpus=0), capsys)[1])  # CPU machines

    predict = ["predict", "/shared/runs/r", "--input", "/shared/new.csv"]
    job = commands(predict, skypilot(0), capsys)[1]
    assert job[:3] == ["gen-emotion", "predict", "/shared/runs/r"]
    assert "--out /shared/runs/r/predictions/new.csv --workers 8 --ray-address 10.0.0.1:6379" in " ".join(job)


def test_one_training_over_every_machine_meets_under_accelerate(capsys):
    train = ["train", "recipes/r.yaml", "--data", "d", "--out", "/shared/runs/r"]
    for rank, out in ((0, "/shared/runs/r"), (1, "/shared/runs/r.machine-1")):
        (command,) = commands(train, skypilot(rank), capsys)
        assert command[:3] == ["gen-emotion", "run", "recipes/r.yaml"]
        job = " ".join(command)
        assert f"--out {out} --gpus 4 --num-machines 2 --machine-rank {rank}" in job
        assert "--main-process-ip 10.0.0.1 --main-process-port 29500" in job
    # what `gen-emotion run` then starts for the training step, on machine 1
    launcher = Launcher(gpus=4, machines=Machines.from_flags(2, 1, "10.0.0.1", 29500))
    fit = launcher.command("fit")
    assert fit[fit.index("--num_processes") + 1] == "8"  # every GPU of every machine
    where = fit[fit.index("--num_machines") :]
    flags = ["--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "10.0.0.1", "--main_process_port"]
    assert where == [*flags, "29500", "-m", WORKER]
    assert launcher.command("predict")[1:] == ["-m", WORKER]  # the main machine generates alone
    side_by_side = Launcher(gpus=2, main_process_port=31234).command("fit")  # cv --parallel-folds on one machine
    assert side_by_side[side_by_side.index("--main_process_port") + 1] == "31234"


def test_what_is_missing_or_wrong_is_one_line(capsys, tmp_path):
    assert main(["cv", "recipes/r.yaml", "--data", "d", "--out", "o", "--dry-run"], {}) == 2
    assert "SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS not set" in capsys.readouterr().err
    assert main(["predict", "/shared/runs/r", "--dry-run"], skypilot(0)) == 2
    assert "predict needs --input" in capsys.readouterr().err
    with pytest.raises(GenEmotionError, match="--machine-rank must be in 0..1"):
        Machines.from_flags(2, 2, "10.0.0.1", 29500)
    with pytest.raises(GenEmotionError, match="go with --num-machines"):
        Machines.from_flags(None, 1, None, 29500)
    out = ["--out", str(tmp_path / "run")]
    assert cli(["run", "tfidf-logreg", "--machine-rank", "1", *out]) == 2
    assert capsys.readouterr().err.strip().endswith("--machine-rank and --main-process-ip go with --num-machines")
    assert not (tmp_path / "run").exists()


def test_the_skypilot_yaml_runs_the_nodes_module_on_every_machine(tmp_path):
    """The YAML loads; its ``run``, as SkyPilot runs it (bash, the YAML's envs and SkyPilot's), dry-run on each
    machine, gives the commands above: its variables reach ``gen_emotion.distributed.nodes`` as meant."""
    task = yaml.safe_load(YAML.read_text())
    assert (
        task["num_nodes"] >= 2 and "/shared" in task["file_mounts"] and "gen_emotion.distributed.nodes" in task["run"]
    )
    assert '".[gpu,ray]"' in task["setup"]
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    envs = {k: str(v) for k, v in task["envs"].items()}
    base = {**os.environ, **envs, "GEN_EMOTION_VENV": str(venv.parent), "DRY_RUN": "1"}
    base["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)

    def run(rank: int, **changes: str) -> str:
        env = {**base, **skypilot(rank), **changes}
        result = subprocess.run(["bash", "-c", task["run"]], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
        assert result.returncode == 0, result.stderr
        return result.stdout

    head = run(0)
    assert f"{venv}/ray start --head" in head and f"{venv}/gen-emotion cv {envs['RECIPE']}" in head
    assert f"--data {envs['DATA']} --out /shared/runs/{envs['RUN_NAME']} --folds {envs['FOLDS']}" in head
    assert f"{venv}/ray start --address 10.0.0.1:6379" in run(1)
    predict = run(0, JOB="predict", INPUT="/shared/new.csv")
    assert f"{venv}/gen-emotion predict /shared/runs/{envs['RUN_NAME']} --input /shared/new.csv" in predict
    train = run(1, JOB="train", OVERRIDES="train.epochs=2")
    assert f"run {envs['RECIPE']} train.epochs=2 --data" in train and "--machine-rank 1" in train
