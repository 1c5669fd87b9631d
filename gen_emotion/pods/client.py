"""Talking to RunPod (the official ``runpod`` SDK, imported when needed) and copying a pod's run folder back.

``fetch`` reads the pod's public IP and the port mapped to its SSH port 22 from the SDK's pod info and runs
rsync (or scp) over SSH. The pod keeps its SSH host keys on its volume, so the key trusted on first use stays
valid after the pod is stopped and started again.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError

API_KEY_ENV = "RUNPOD_API_KEY"
CONSOLE_URL = "https://www.console.runpod.io/pods"
KEYS_URL = "https://www.console.runpod.io/user/settings"


def api_key(environ: Mapping[str, str] | None = None) -> str:
    """The RunPod API key from ``RUNPOD_API_KEY``; a one-line error when it is missing."""
    environ = os.environ if environ is None else environ
    key = environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise GenEmotionError(f"{API_KEY_ENV} is not set: create an API key at {KEYS_URL} and export {API_KEY_ENV}")
    return key


def runpod_sdk(environ: Mapping[str, str] | None = None) -> Any:
    """The ``runpod`` SDK, its API key set from ``RUNPOD_API_KEY``."""
    key = api_key(environ)
    try:
        import runpod
    except ImportError:
        raise GenEmotionError("the runpod SDK is not installed: pip install 'gen-emotion[pod]'") from None
    runpod.api_key = key
    return runpod


@contextmanager
def api_call(action: str) -> Iterator[None]:
    """Turn an SDK or network failure into a one-line ``GenEmotionError``."""
    try:
        yield
    except GenEmotionError:
        raise
    except Exception as err:  # the SDK raises its own errors, ValueError and requests' errors
        message = " ".join(str(err).split()) or type(err).__name__
        raise GenEmotionError(f"RunPod API: {action} failed: {message}") from None


def get_pod(sdk: Any, pod_id: str) -> dict[str, Any]:
    with api_call(f"looking up pod {pod_id}"):
        pod = sdk.get_pod(pod_id)
    if not pod:
        raise GenEmotionError(f"no pod {pod_id!r} in this account (gen-emotion pods lists them)")
    return pod


def pod_env_value(pod: Mapping[str, Any], key: str) -> str | None:
    """A variable of the pod's environment as the API reports it (``KEY=value`` strings or key/value maps)."""
    for item in pod.get("env") or []:
        if isinstance(item, Mapping) and item.get("key") == key:
            return item.get("value")
        if isinstance(item, str) and item.startswith(f"{key}="):
            return item.split("=", 1)[1]
    return None


def ssh_endpoint(pod: Mapping[str, Any]) -> tuple[str, int]:
    """The public IP and port that reach the pod's SSH server (port 22), from the SDK's pod info."""
    runtime = pod.get("runtime")
    if not runtime:
        status = pod.get("desiredStatus", "unknown")
        raise GenEmotionError(
            f"pod {pod.get('id')} is not running (status {status}): start it again in {CONSOLE_URL} "
            "(its /workspace volume is kept) and fetch once it runs"
        )
    for port in runtime.get("ports") or []:
        if port.get("privatePort") == 22 and port.get("isIpPublic") and port.get("type", "tcp") == "tcp":
            return str(port["ip"]), int(port["publicPort"])
    raise GenEmotionError(
        f"pod {pod.get('id')} has no public SSH port yet (it may still be starting); "
        "pods made by gen-emotion launch expose 22/tcp on a public IP"
    )


def ssh_options(identity: Path | None, known_hosts: Path) -> list[str]:
    """ssh options shared by rsync and scp: a per-pod known_hosts file, trusted on first use."""
    options = ["-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known_hosts}"]
    if identity is not None:
        options += ["-i", str(identity)]
    return options


def fetch_command(
    host: str,
    port: int,
    remote_dir: str,
    out_dir: Path,
    *,
    tool: str = "rsync",
    identity: Path | None = None,
    known_hosts: Path,
    excludes: tuple[str, ...] = (),
) -> list[str]:
    """The command that copies ``remote_dir`` on the pod into ``out_dir`` (which becomes the run folder).

    rsync is incremental (fetching a running pod again only copies what changed) and can skip files;
    scp is the fallback where rsync is not installed.
    """
    remote = f"root@{host}:{remote_dir.rstrip('/')}"
    if tool == "rsync":
        ssh = shlex.join(["ssh", "-p", str(port), *ssh_options(identity, known_hosts)])
        excluded = [f"--exclude={pattern}" for pattern in excludes]
        return ["rsync", "-az", "--partial", "-e", ssh, *excluded, f"{remote}/", f"{out_dir}/"]
    if tool == "scp":
        if excludes:
            raise GenEmotionError("--exclude needs rsync, which is not installed here")
        return ["scp", "-r", "-P", str(port), *ssh_options(identity, known_hosts), f"{remote}/*", f"{out_dir}/"]
    raise GenEmotionError(f"unknown copy tool {tool!r}")


def read_marker(run_dir: Path) -> tuple[str, dict[str, str]] | None:
    """``("DONE"|"FAILED", fields)`` from a run folder's marker, or ``None`` while the run goes on."""
    for name in ("DONE", "FAILED"):
        path = run_dir / name
        if path.is_file():
            fields = {}
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("---"):
                    break
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            return name, fields
    return None


def format_pods(pods: list[Mapping[str, Any]]) -> list[str]:
    """A table of pods: id, name, status, GPUs, cost per hour, uptime and SSH address."""
    if not pods:
        return ["no pods in this account"]
    rows = [("ID", "NAME", "STATUS", "GPU", "$/HR", "UPTIME", "SSH")]
    running_cost = 0.0
    for pod in pods:
        machine = pod.get("machine") or {}
        gpu = f"{pod.get('gpuCount') or 0} x {machine.get('gpuDisplayName') or '?'}"
        cost = float(pod.get("costPerHr") or 0.0)
        status = str(pod.get("desiredStatus") or "?")
        if status == "RUNNING":
            running_cost += cost
        try:
            host, port = ssh_endpoint(pod)
            ssh = f"root@{host} -p {port}"
        except GenEmotionError:
            ssh = "-"
        seconds = int(pod.get("uptimeSeconds") or (pod.get("runtime") or {}).get("uptimeInSeconds") or 0)
        uptime = f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds else "-"
        rows.append((str(pod.get("id")), str(pod.get("name")), status, gpu, f"{cost:.3f}", uptime, ssh))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"running pods cost ${running_cost:.3f}/hr together (stopped pods still pay for their volume)")
    return lines
