"""One job over the machines of a SkyPilot cluster (``runpod/sky-cluster.yaml``): what each machine runs, built from
the variables SkyPilot gives every machine's ``run`` (``SKYPILOT_NODE_RANK``, ``SKYPILOT_NODE_IPS`` one address a
line, the first the head's, ``SKYPILOT_NUM_NODES``, ``SKYPILOT_NUM_GPUS_PER_NODE``).

``python -m gen_emotion.distributed.nodes JOB RECIPE_OR_FOLDER [OVERRIDE ...] --data DIR --out DIR [...]
[--dry-run]``, the same line on every machine:

- ``cv`` and ``predict`` run on Ray: the head machine starts it (``ray start --head``, on its own port: SkyPilot's
  own Ray uses 6380), the others join it, and once every machine is in, the head runs ``gen-emotion cv ...
  --parallel-folds P`` (``--gpus-per-fold`` GPUs each; P: as many as the GPUs allow, else one per machine) or
  ``gen-emotion predict FOLDER --input FILE --workers W`` (one per GPU, else one per machine) with
  ``--ray-address HEAD:PORT``, then stops its Ray. The folders must be on a volume every machine sees (the
  YAML's bucket).
- ``train`` trains one model over every GPU of every machine: each runs ``gen-emotion run ... --gpus G
  --num-machines N --machine-rank R --main-process-ip HEAD``, and the training step meets under accelerate;
  machine 0 writes the run folder ``--out``, machine R its own ``OUT.machine-R`` (only its share of the training).

``--dry-run`` prints this machine's commands and runs nothing. With ``RAY_AUTH_TOKEN`` set (a SkyPilot secret, the
same on every machine), Ray runs with token authentication (``RAY_AUTH_MODE=token``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gen_emotion.core.errors import GenEmotionError

RAY_PORT = 6379
TRAIN_PORT = 29500
JOIN_TRIES = 60
"""How many times (5 s apart) a machine tries to join the head's Ray, and the head waits for the others."""


@dataclass(frozen=True)
class SkyCluster:
    """This machine's place in the cluster, from SkyPilot's variables."""

    rank: int
    ips: tuple[str, ...]
    gpus: int
    """GPUs per machine."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SkyCluster:
        missing = [name for name in ("SKYPILOT_NODE_RANK", "SKYPILOT_NODE_IPS") if not env.get(name, "").strip()]
        if missing:
            raise GenEmotionError(
                f"{', '.join(missing)} not set: run this in a SkyPilot task (runpod/sky-cluster.yaml)"
            )
        ips = tuple(line.strip() for line in env["SKYPILOT_NODE_IPS"].splitlines() if line.strip())
        count = int(env.get("SKYPILOT_NUM_NODES") or len(ips))
        rank = int(env["SKYPILOT_NODE_RANK"])
        if count != len(ips) or not 0 <= rank < count:
            raise GenEmotionError(f"SkyPilot says {count} machines, rank {rank}, but lists {len(ips)} addresses")
        return cls(rank, ips, int(env.get("SKYPILOT_NUM_GPUS_PER_NODE") or 0))

    @property
    def head(self) -> str:
        return self.ips[0]

    @property
    def count(self) -> int:
        return len(self.ips)


@dataclass(frozen=True)
class Step:
    """One command of a machine's job: ``run`` it, ``join`` (run it again until it succeeds: the head's Ray may
    not be up yet), ``wait`` until this many machines are in the head's Ray, or ``always`` run it, even after a
    step failed (stopping Ray)."""

    how: str
    argv: tuple[str, ...] = ()
    machines: int = 0

    def show(self) -> str:
        if self.how == "wait":
            return f"# wait until {self.machines} machines are in Ray"
        return f"+ {shlex.join(self.argv)}{'   # until it joins' if self.how == 'join' else ''}"


def ray_steps(machines: SkyCluster, port: int, head_job: list[str], ray: str) -> list[Step]:
    """Start Ray over the machines; the head runs ``head_job`` once all are in, then stops its Ray."""
    address = f"{machines.head}:{port}"
    if machines.rank > 0:
        return [Step("join", (ray, "start", "--address", address, "--disable-usage-stats"))]
    return [
        Step("run", (ray, "start", "--head", "--port", str(port), "--disable-usage-stats")),
        Step("wait", machines=machines.count),
        Step("run", tuple(head_job)),
        Step("always", (ray, "stop")),
    ]


def job_steps(args: argparse.Namespace, machines: SkyCluster) -> list[Step]:
    """What this machine runs for ``args.job`` (the module docstring)."""
    gen_emotion, ray = args.gen_emotion, args.ray
    given = [args.target, *args.overrides]
    address = f"{machines.head}:{args.ray_port}"
    all_gpus = machines.count * machines.gpus
    if args.job == "cv":
        per_fold = args.gpus_per_fold
        side_by_side = max(1, all_gpus // per_fold) if all_gpus else machines.count
        folds = ["--folds", str(args.folds)] if args.folds else []
        head = [gen_emotion, "cv", *given, "--data", args.data, "--out", args.out, *folds]
        head += ["--gpus", str(per_fold), "--parallel-folds", str(side_by_side), "--ray-address", address]
        return ray_steps(machines, args.ray_port, head, ray)
    if args.job == "predict":
        if not args.input:
            raise GenEmotionError("predict needs --input FILE (on a volume every machine sees)")
        workers = all_gpus or machines.count
        out = args.predictions or str(Path(args.target) / "predictions" / f"{Path(args.input).stem}.csv")
        head = [gen_emotion, "predict", *given, "--input", args.input, "--out", out]
        head += ["--workers", str(workers), "--ray-address", address]
        return ray_steps(machines, args.ray_port, head, ray)
    out = args.out if machines.rank == 0 else f"{args.out}.machine-{machines.rank}"
    command = [gen_emotion, "run", *given, "--data", args.data, "--out", out, "--gpus", str(max(1, machines.gpus))]
    command += ["--num-machines", str(machines.count), "--machine-rank", str(machines.rank)]
    command += ["--main-process-ip", machines.head, "--main-process-port", str(args.train_port)]
    return [Step("run", tuple(command))]


def wait_for_machines(address: str, count: int, tries: int = JOIN_TRIES) -> None:
    """Block until ``count`` machines are alive in the Ray at ``address``."""
    from gen_emotion.distributed.cluster import import_ray

    ray = import_ray()
    ray.init(address=address)
    try:
        for _ in range(tries):
            alive = sum(1 for node in ray.nodes() if node.get("Alive"))
            if alive >= count:
                return
            time.sleep(5)
        raise GenEmotionError(f"only {alive} of {count} machines joined the Ray at {address}")
    finally:
        ray.shutdown()


def run_steps(steps: list[Step], address: str) -> int:
    """Run a machine's steps; the exit status of the first that fails (a ``join`` is tried ``JOIN_TRIES`` times),
    after which only the ``always`` steps run."""
    failed = 0
    for step in steps:
        if failed and step.how != "always":
            continue
        if step.how == "wait":
            try:
                wait_for_machines(address, step.machines)
            except GenEmotionError as err:
                print(f"gen_emotion.distributed.nodes: error: {err}", file=sys.stderr)
                failed = 2
            continue
        for attempt in range(JOIN_TRIES if step.how == "join" else 1):
            print(step.show(), flush=True)
            status = subprocess.run(list(step.argv), check=False).returncode
            if status == 0 or step.how != "join":
                break
            if attempt + 1 < JOIN_TRIES:
                time.sleep(5)
        failed = failed or status
    return failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gen_emotion.distributed.nodes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("job", choices=("cv", "predict", "train"))
    parser.add_argument("target", help="cv, train: the recipe; predict: the trained folder")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument("--data", default=None, help="cv, train: the data folder (every machine sees it)")
    parser.add_argument("--out", default=None, help="cv, train: the cv or run folder")
    parser.add_argument("--folds", type=int, default=None, help="cv: the number of folds")
    parser.add_argument("--gpus-per-fold", type=int, default=1, help="cv: GPUs each fold trains on (default 1)")
    parser.add_argument("--input", default=None, help="predict: the file to predict")
    parser.add_argument("--predictions", default=None, help="predict: the CSV (default FOLDER/predictions/STEM.csv)")
    parser.add_argument("--ray-port", type=int, default=RAY_PORT, help=f"the head's Ray port (default {RAY_PORT})")
    parser.add_argument("--train-port", type=int, default=TRAIN_PORT, help="train: the main machine's port")
    parser.add_argument("--gen-emotion", default="gen-emotion", help="the gen-emotion command")
    parser.add_argument("--ray", default="ray", help="the ray command")
    parser.add_argument("--dry-run", action="store_true", help="print this machine's commands, run nothing")
    args = parser.parse_args(argv)
    if args.job != "predict" and (args.data is None or args.out is None):
        parser.error(f"{args.job} needs --data and --out")
    return args


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        args = parse_args(argv)
        machines = SkyCluster.from_env(env)
        steps = job_steps(args, machines)
        if args.dry_run:
            print(f"# machine {machines.rank} of {machines.count} ({machines.gpus} GPU(s) each), head {machines.head}")
            for step in steps:
                print(step.show())
            return 0
        if env.get("RAY_AUTH_TOKEN"):
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        return run_steps(steps, f"{machines.head}:{args.ray_port}")
    except (GenEmotionError, ValueError) as err:
        print(f"gen_emotion.distributed.nodes: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
