"""``gen_emotion.pods.client`` and the ``pods/fetch/stop`` handlers of ``gen_emotion.pods.commands``: what is built
from the SDK's answers (SSH address, run name, the table of pods), the copy command, the run markers, and the
handlers driven by a stand-in SDK. Nothing here calls RunPod or runs ssh."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.pods import commands
from gen_emotion.pods.client import (
    api_call,
    api_key,
    fetch_command,
    format_pods,
    pod_env_value,
    read_marker,
    runpod_sdk,
    ssh_endpoint,
)

POD = {
    "id": "abc123",
    "name": "gen-emotion-t1",
    "desiredStatus": "RUNNING",
    "costPerHr": 2.99,
    "gpuCount": 1,
    "uptimeSeconds": 3900,
    "env": ["GEN_EMOTION_RUN_NAME=t1", "HF_TOKEN=x"],
    "machine": {"gpuDisplayName": "H100 SXM"},
    "runtime": {
        "ports": [
            {"ip": "10.0.0.5", "isIpPublic": False, "privatePort": 22, "publicPort": 22, "type": "tcp"},
            {"ip": "203.0.113.7", "isIpPublic": True, "privatePort": 8888, "publicPort": 40000, "type": "http"},
            {"ip": "203.0.113.7", "isIpPublic": True, "privatePort": 22, "publicPort": 22041, "type": "tcp"},
        ]
    },
}


class FakeSdk:
    """Stands in for the ``runpod`` module: answers from ``pods``, records the calls."""

    def __init__(self, pods=(POD,), error: Exception | None = None):
        self.pods = {pod["id"]: pod for pod in pods}
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def get_pod(self, pod_id):
        if self.error:
            raise self.error
        return self.pods.get(pod_id)

    def get_pods(self):
        return list(self.pods.values())

    def stop_pod(self, pod_id):
        self.calls.append(("stop", pod_id))

    def terminate_pod(self, pod_id):
        self.calls.append(("terminate", pod_id))


@pytest.fixture
def sdk(monkeypatch):
    fake = FakeSdk()
    monkeypatch.setattr(commands, "runpod_sdk", lambda: fake)
    return fake


# --- API key and errors ---------------------------------------------------------------------------------------


def test_api_key_from_the_environment():
    assert api_key({"RUNPOD_API_KEY": " rp-key \n"}) == "rp-key"
    with pytest.raises(GenEmotionError, match="RUNPOD_API_KEY is not set: create an API key at https://"):
        api_key({"RUNPOD_API_KEY": "  "})


def test_runpod_sdk_gets_the_key(monkeypatch):
    import runpod

    monkeypatch.setattr(runpod, "api_key", None)
    assert runpod_sdk({"RUNPOD_API_KEY": "rp-key"}) is runpod and runpod.api_key == "rp-key"


def test_sdk_failures_become_one_line_errors():
    failed = "^RunPod API: listing pods failed: bad key, status 401$"
    with pytest.raises(GenEmotionError, match=failed), api_call("listing pods"):
        raise ValueError("bad\nkey,   status 401")
    with pytest.raises(GenEmotionError, match="^own$"), api_call("x"):
        raise GenEmotionError("own")  # passed through as it is


# --- pod info --------------------------------------------------------------------------------------------------


def test_ssh_endpoint_and_run_name_from_pod_info():
    assert ssh_endpoint(POD) == ("203.0.113.7", 22041)
    assert pod_env_value(POD, "GEN_EMOTION_RUN_NAME") == "t1"
    assert pod_env_value({"env": [{"key": "GEN_EMOTION_RUN_NAME", "value": "t2"}]}, "GEN_EMOTION_RUN_NAME") == "t2"
    assert pod_env_value({"env": None}, "GEN_EMOTION_RUN_NAME") is None
    assert pod_env_value({"env": ["GEN_EMOTION_RUN_NAME_X=1"]}, "GEN_EMOTION_RUN_NAME") is None


def test_ssh_endpoint_of_a_pod_that_is_not_reachable():
    with pytest.raises(GenEmotionError, match="not running \\(status EXITED\\)"):
        ssh_endpoint({**POD, "runtime": None, "desiredStatus": "EXITED"})
    with pytest.raises(GenEmotionError, match="no public SSH port"):
        ssh_endpoint({**POD, "runtime": {"ports": POD["runtime"]["ports"][:2]}})


def test_format_pods_shows_cost_and_ssh():
    stopped = {**POD, "id": "def456", "desiredStatus": "EXITED", "runtime": None, "costPerHr": 0.5}
    lines = format_pods([POD, stopped])
    assert lines[0].split() == ["ID", "NAME", "STATUS", "GPU", "$/HR", "UPTIME", "SSH"]
    assert "abc123" in lines[1] and "2.990" in lines[1] and "1h05m" in lines[1] and "1 x H100 SXM" in lines[1]
    assert "root@203.0.113.7 -p 22041" in lines[1]
    assert "def456" in lines[2] and "EXITED" in lines[2] and lines[2].endswith("-")
    assert "$2.990/hr" in lines[-1]  # only running pods count
    assert "HF_TOKEN" not in "\n".join(lines)
    assert format_pods([]) == ["no pods in this account"]


# --- fetch ------------------------------------------------------------------------------------------------------


def test_fetch_command_rsync_and_scp(tmp_path):
    known = tmp_path / "known_hosts-abc123"
    out = tmp_path / "runs" / "t1"
    rsync = fetch_command(
        "203.0.113.7",
        22041,
        "/workspace/runs/t1",
        out,
        identity=Path("/home/me/.ssh/id_ed25519"),
        known_hosts=known,
        excludes=("merged*",),
    )
    ssh = f"ssh -p 22041 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known} -i /home/me/.ssh/id_ed25519"
    assert rsync == [
        "rsync",
        "-az",
        "--partial",
        "-e",
        ssh,
        "--exclude=merged*",
        "root@203.0.113.7:/workspace/runs/t1/",
        f"{out}/",
    ]
    scp = fetch_command("203.0.113.7", 22041, "/workspace/runs/t1/", out, tool="scp", known_hosts=known)
    assert scp == [
        "scp",
        "-r",
        "-P",
        "22041",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-o",
        f"UserKnownHostsFile={known}",
        "root@203.0.113.7:/workspace/runs/t1/*",
        f"{out}/",
    ]
    with pytest.raises(GenEmotionError, match="--exclude needs rsync"):
        fetch_command("h", 1, "/r", out, tool="scp", known_hosts=known, excludes=("x",))
    with pytest.raises(GenEmotionError, match="unknown copy tool 'ftp'"):
        fetch_command("h", 1, "/r", out, tool="ftp", known_hosts=known)


def test_read_marker(tmp_path):
    assert read_marker(tmp_path) is None
    (tmp_path / "FAILED").write_text("exit_status=3\ncommand=run\n--- last lines ---\nkey=not-a-field\n")
    assert read_marker(tmp_path) == ("FAILED", {"exit_status": "3", "command": "run"})
    (tmp_path / "DONE").write_text("exit_status=0\ngpus=2\n")
    assert read_marker(tmp_path) == ("DONE", {"exit_status": "0", "gpus": "2"})


def fetch_args(tmp_path, **values) -> argparse.Namespace:
    defaults = {"pod_id": "abc123", "run": None, "out": None, "identity": None, "exclude": []}
    return argparse.Namespace(**{**defaults, **values})


def test_fetch_copies_the_run_named_by_launch(sdk, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEN_EMOTION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(commands.shutil, "which", lambda name: f"/usr/bin/{name}")
    ran = []

    def fake_run(command, check):
        ran.append(command)
        out = Path(command[-1])
        (out / "DONE").write_text("exit_status=0\ncommand=run\n")
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(commands.subprocess, "run", fake_run)
    out = tmp_path / "runs" / "t1"
    assert commands.cmd_fetch(fetch_args(tmp_path, out=out, exclude=["merged*"])) == 0
    (command,) = ran
    assert command[0] == "rsync" and command[-2:] == ["root@203.0.113.7:/workspace/runs/t1/", f"{out}/"]
    assert f"UserKnownHostsFile={tmp_path / 'cache' / 'ssh' / 'known_hosts-abc123'}" in command[4]
    assert "--exclude=merged*" in command
    printed = capsys.readouterr().out
    assert f"fetched {out}: DONE, exit status 0" in printed and "gen-emotion stop abc123" in printed


def test_fetch_refuses_what_it_cannot_copy(sdk, tmp_path, monkeypatch):
    monkeypatch.setenv("GEN_EMOTION_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the default --out is runs/RUN_NAME
    with pytest.raises(GenEmotionError, match="no pod 'zzz' in this account"):
        commands.cmd_fetch(fetch_args(tmp_path, pod_id="zzz"))
    sdk.pods["bare"] = {**POD, "id": "bare", "env": []}
    with pytest.raises(GenEmotionError, match="not made by gen-emotion launch: pass --run NAME"):
        commands.cmd_fetch(fetch_args(tmp_path, pod_id="bare"))
    sdk.pods["odd"] = {**POD, "id": "odd", "env": ["GEN_EMOTION_RUN_NAME=../../etc"]}
    with pytest.raises(GenEmotionError, match="one folder name"):
        commands.cmd_fetch(fetch_args(tmp_path, pod_id="odd"))
    assert not (tmp_path / "runs").exists()


def test_sdk_errors_while_fetching_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(commands, "runpod_sdk", lambda: FakeSdk(error=ConnectionError("timed out")))
    with pytest.raises(GenEmotionError, match="^RunPod API: looking up pod abc123 failed: timed out$"):
        commands.cmd_fetch(fetch_args(tmp_path))


# --- pods and stop -------------------------------------------------------------------------------------------


def test_pods_prints_the_table(sdk, capsys):
    assert commands.cmd_pods(argparse.Namespace()) == 0
    assert "root@203.0.113.7 -p 22041" in capsys.readouterr().out


def test_stop_keeps_the_volume_unless_terminated(sdk, capsys):
    assert commands.cmd_stop(argparse.Namespace(pod_id="abc123", terminate=False)) == 0
    assert "volume is kept" in capsys.readouterr().out
    assert commands.cmd_stop(argparse.Namespace(pod_id="abc123", terminate=True)) == 0
    assert sdk.calls == [("stop", "abc123"), ("terminate", "abc123")]


@pytest.mark.parametrize(("pod_id", "safe"), [("abc123", "abc123"), ("../x", "---x"), ("a/b", "a-b"), ("", "pod")])
def test_safe_pod_id_is_a_file_name(pod_id, safe):
    assert commands.safe_pod_id(pod_id) == safe
