"""The command handlers of ``gen-emotion launch``, ``pods``, ``fetch`` and ``stop``; only these talk to RunPod."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.pods.client import (
    api_call,
    api_key,
    fetch_command,
    format_pods,
    get_pod,
    pod_env_value,
    read_marker,
    runpod_sdk,
    ssh_endpoint,
)
from gen_emotion.pods.gpus import ACCELERATE_CONFIGS
from gen_emotion.pods.plan import (
    CLOUD_TYPES,
    COMMANDS,
    IMAGE_ENV,
    WORKSPACE,
    LaunchOptions,
    describe_plan,
    follow_lines,
    mask_request,
    plan_launch,
    run_name,
)


def cmd_launch(args: argparse.Namespace) -> int:
    options = LaunchOptions(
        recipe=args.recipe,
        overrides=list(args.overrides),
        command=args.pod_command,
        folds=args.folds,
        gpu=args.gpu,
        gpus=args.gpus,
        volume_gb=args.volume_gb,
        data_url=args.data_url,
        data_id=args.data_id,
        image=args.image,
        name=args.name,
        cloud=args.cloud,
        accelerate_config=args.accelerate_config,
        model_size=args.model_size,
        idle_stop_minutes=args.idle_stop_minutes,
    )
    if not args.dry_run:
        api_key()  # before anything is printed
    plan = plan_launch(options, os.environ, dry_run=args.dry_run)
    for line in describe_plan(plan):
        print(line)
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        print("dry run: no pod created; runpod.create_pod would get:")
        print(json.dumps(mask_request(plan.request), indent=2))
        return 0
    sdk = runpod_sdk()
    with api_call("creating the pod"):
        pod = sdk.create_pod(**plan.request)
    for line in follow_lines(str(pod.get("id")), plan):
        print(line)
    return 0


def cmd_pods(args: argparse.Namespace) -> int:
    sdk = runpod_sdk()
    with api_call("listing pods"):
        pods = sdk.get_pods() or []
    for line in format_pods(pods):
        print(line)
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from gen_emotion.core.files import make_folder
    from gen_emotion.models.loading import cache_dir

    sdk = runpod_sdk()
    pod = get_pod(sdk, args.pod_id)
    name = args.run or pod_env_value(pod, "GEN_EMOTION_RUN_NAME")
    if not name:
        raise GenEmotionError(f"pod {args.pod_id} was not made by gen-emotion launch: pass --run NAME")
    host, port = ssh_endpoint(pod)
    out_dir = make_folder(args.out or Path("runs") / run_name(name, None), "--out")
    known_hosts = cache_dir() / "ssh" / f"known_hosts-{safe_pod_id(args.pod_id)}"
    make_folder(known_hosts.parent)
    tool = "rsync" if shutil.which("rsync") else "scp"
    command = fetch_command(
        host,
        port,
        f"{WORKSPACE}/runs/{name}",
        out_dir,
        tool=tool,
        identity=args.identity,
        known_hosts=known_hosts,
        excludes=tuple(args.exclude),
    )
    print("+ " + shlex.join(command), flush=True)
    if shutil.which(command[0]) is None:
        raise GenEmotionError(f"{command[0]} is not installed here: install OpenSSH (and rsync) to fetch runs")
    status = subprocess.run(command, check=False).returncode
    if status != 0:
        raise GenEmotionError(f"{command[0]} exited with status {status} while copying from pod {args.pod_id}")
    marker = read_marker(out_dir)
    if marker is None:
        print(f"fetched {out_dir}: no DONE or FAILED marker yet, the run is still going; fetch again later")
    else:
        name, fields = marker
        print(f"fetched {out_dir}: {name}, exit status {fields.get('exit_status', '?')}")
        print(f"when you are done with the pod: gen-emotion stop {args.pod_id}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    sdk = runpod_sdk()
    if args.terminate:
        with api_call(f"terminating pod {args.pod_id}"):
            sdk.terminate_pod(args.pod_id)
        print(f"terminated pod {args.pod_id}: it and its volume are gone")
        return 0
    with api_call(f"stopping pod {args.pod_id}"):
        sdk.stop_pod(args.pod_id)
    print(
        f"stopped pod {args.pod_id}: the GPU is released; its /workspace volume is kept (and billed) "
        f"until you run: gen-emotion stop {args.pod_id} --terminate"
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``launch``, ``pods``, ``fetch`` and ``stop`` on the ``gen-emotion`` subcommand parser."""
    p = subparsers.add_parser("launch", help="run a recipe on a RunPod GPU pod (needs RUNPOD_API_KEY)")
    p.add_argument("recipe", help="recipe YAML file, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, applied and checked here")
    p.add_argument("--gpu", default=None, help="RunPod GPU type, e.g. 'NVIDIA H100 80GB HBM3' (default: cheapest fit)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs in the pod; >1 trains with accelerate, generates with TP")
    p.add_argument("--volume-gb", type=int, default=None, help="size of the /workspace volume (default: from model)")
    p.add_argument(
        "--command",
        dest="pod_command",
        choices=COMMANDS,
        default=None,
        help="what the pod runs (default: run for task: generate recipes, cv for task: classify)",
    )
    p.add_argument("--folds", type=int, default=None, help="with cv: number of folds (default: cv's, 5)")
    p.add_argument("--data-url", default=None, help="https URL (e.g. presigned S3) of a .tar.gz/.zip with train/test")
    p.add_argument(
        "--data-id", default=None, help="a dataset on the hub (owner/name) that the pod loads, instead of --data-url"
    )
    p.add_argument("--image", default=None, help=f"image built from runpod/Dockerfile (default: ${IMAGE_ENV})")
    p.add_argument("--name", default=None, help="run name (default: RECIPE-TIME)")
    p.add_argument("--cloud", choices=CLOUD_TYPES, default="ALL", help="RunPod secure or community cloud")
    p.add_argument("--accelerate-config", choices=ACCELERATE_CONFIGS, default=None, help="multi-GPU training")
    p.add_argument("--model-size", default=None, help="model size when its name does not say, e.g. 3.8B")
    p.add_argument("--idle-stop-minutes", type=int, default=60, help="the pod stops itself this long after (0: never)")
    p.add_argument("--dry-run", action="store_true", help="print the pod request (secrets masked); call nothing")
    p.set_defaults(func=cmd_launch)

    p = subparsers.add_parser("pods", help="list your RunPod pods with their cost per hour")
    p.set_defaults(func=cmd_pods)

    p = subparsers.add_parser("fetch", help="copy a pod's run folder back over SSH (rsync, else scp)")
    p.add_argument("pod_id")
    p.add_argument("--out", type=Path, default=None, help="local run folder (default: runs/RUN_NAME)")
    p.add_argument("--run", default=None, help="run name on the pod (default: the one launch gave it)")
    p.add_argument("--identity", type=Path, default=None, help="SSH private key (default: ssh's own choice)")
    p.add_argument("--exclude", action="append", default=[], help="rsync pattern to skip, e.g. 'merged*'")
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("stop", help="stop a pod (GPU billing ends, the volume stays)")
    p.add_argument("pod_id")
    p.add_argument("--terminate", action="store_true", help="delete the pod and its volume instead")
    p.set_defaults(func=cmd_stop)


def safe_pod_id(pod_id: str) -> str:
    """A pod id as a file name part."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in pod_id)[:64] or "pod"
