"""Work spread over a Ray cluster: ``cv --parallel-folds N`` (each fold a Ray task) and the Ray session that
``predict --workers N`` (``sharded_predict``) runs in.

Without ``--ray-address`` a command starts a local Ray of this machine and stops it when it ends; with it, the
command joins the cluster there (``ray start --head`` on a pod, a SkyPilot cluster: ``nodes``) and leaves it up.
A Ray session already open in this process (a notebook, the tests) is used as it is. Ray is imported here only,
and only for these flags: the one-machine path never needs it (``pip install "gen-emotion[ray]"`` adds it).

A fold asks Ray for what it needs: ``--gpus`` GPUs where its recipe trains a transformers model and the cluster
has GPUs, and a share of the CPUs (the cluster's CPUs over ``--parallel-folds``, at most one machine's). It runs
``cv.train_pending_fold``, the sequential loop's ``run_fold``, writing its own ``folds/fold-k/`` while the command
holds the cv folder's lock; every machine must see the cv folder and the data folder at the same path (one
machine, or a shared volume). A fold computes with the threads the command's own process has (``Threads``), not
one per CPU of its share as Ray would start it: a fold's numbers depend on them, so the folder is the sequential
loop's. A fold that fails is named once every other fold has ended; the finished ones are kept, so the same
command again trains only the failed ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gen_emotion.core.errors import GenEmotionError
from gen_emotion.evaluation.cv import PendingFolds, train_pending_fold
from gen_emotion.models.hardware import compute_threads
from gen_emotion.runs.folder import CV_SETTINGS

log = logging.getLogger(__name__)

RAY_EXTRA = 'pip install "gen-emotion[ray]"'
SHARED = "every machine of the cluster must see it at the same path (a shared volume)"
FOLD_RETRIES = 1
"""How many times a fold whose process or machine died is started again (a fold that fails is not)."""


def import_ray() -> Any:
    """The ``ray`` module, or one line naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise GenEmotionError(f"--parallel-folds, --workers and --ray-address need Ray: {RAY_EXTRA}") from None
    return ray


def on_ray(value: int | None, flag: str, address: str | None) -> bool:
    """Whether a command runs on Ray: ``flag`` (``--parallel-folds N``, ``--workers N``) given. Ray is imported
    at once, so a missing one is one line before any work; ``--ray-address`` alone is refused."""
    if value is None:
        if address:
            raise GenEmotionError(f"--ray-address goes with {flag}")
        return False
    if value < 1:
        raise GenEmotionError(f"{flag} must be at least 1, got {value}")
    import_ray()
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray for one command (the module docstring): yields the ``ray`` module, connected."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"--ray-address {address}" if address else "a local Ray"
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise GenEmotionError(f"{where}: cannot start or reach Ray ({lines[0]})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Share:
    """What one fold or one prediction worker asks Ray for."""

    cpus: int
    gpus: int

    def options(self) -> dict[str, Any]:
        return {"num_cpus": self.cpus, "num_gpus": self.gpus}

    def describe(self) -> str:
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}" + (f" and {self.gpus} GPU(s)" if self.gpus else "")


def cluster_shape(ray: Any) -> tuple[int, int, int, int]:
    """The cluster's CPUs and GPUs in all, and the most CPUs and GPUs any one of its machines has."""
    totals = ray.cluster_resources()
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    biggest_cpus = max((int(n.get("CPU", 0)) for n in nodes), default=int(totals.get("CPU", 1)))
    biggest_gpus = max((int(n.get("GPU", 0)) for n in nodes), default=int(totals.get("GPU", 0)))
    return int(totals.get("CPU", 1)), int(totals.get("GPU", 0)), biggest_cpus, biggest_gpus


def share_of(ray: Any, side_by_side: int, gpus: int, wants_gpu: bool) -> Share:
    """The share of one of ``side_by_side`` folds or workers: ``gpus`` GPUs each where it ``wants_gpu`` and the
    cluster has GPUs, and the CPUs over ``side_by_side`` (at least one, at most one machine's)."""
    cpus, all_gpus, biggest_cpus, biggest_gpus = cluster_shape(ray)
    each = Share(max(1, min(cpus // side_by_side, biggest_cpus)), gpus if wants_gpu and all_gpus else 0)
    if each.gpus > biggest_gpus:
        raise GenEmotionError(f"each asks for {each.gpus} GPUs (--gpus); the largest machine has {biggest_gpus}")
    return each


@dataclass(frozen=True)
class Threads:
    """The CPU threads the command's process computes with, recorded where it starts the folds and given to each
    fold task: Ray starts a task with ``OMP_NUM_THREADS`` set to its CPU share, and a sum split over fewer threads
    gives other last digits, so a fold of fewer threads than the sequential loop's would write other probabilities."""

    pools: tuple[tuple[str, int], ...]
    """Each kind of thread pool (``blas``, ``openmp``: ``hardware.compute_threads``) and its threads."""
    torch: int | None = None
    """PyTorch's intra-op threads, for folds that train a transformers model."""

    @classmethod
    def of_this_process(cls, with_torch: bool) -> Threads:
        torch = None
        if with_torch:
            import torch as torch_module

            torch = torch_module.get_num_threads()
        return cls(tuple(compute_threads().items()), torch)

    @property
    def count(self) -> int:
        return self.torch or max((n for _, n in self.pools), default=1)

    def runtime_env(self) -> dict[str, Any]:
        """Ray's ``runtime_env`` for a fold task: its process starts with these threads (OpenMP, and BLAS libraries
        that read ``OMP_NUM_THREADS`` when they load)."""
        return {"env_vars": {"OMP_NUM_THREADS": str(self.count)}}

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within: the recorded threads, in libraries loaded already and (``torch.set_num_threads``) PyTorch's."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=dict(self.pools)):
            if self.torch is None:
                yield
                return
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(self.torch)
            try:
                yield
            finally:
                torch.set_num_threads(before)


def free_port() -> int:
    """A TCP port free on this machine now (for one training's accelerate rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def fold_task(pending: PendingFolds, k: int, cwd: str, threads: Threads) -> None:
    """One fold on whichever machine Ray gave it, in the command's working folder ``cwd`` (its paths are as the
    command was given them, so the fold's files are the sequential run's) and with the command's ``threads``: logged
    to the cv folder's ``run.log``, trained and predicted."""
    from gen_emotion.core.logs import setup_logging

    here = socket.gethostname()
    if not Path(cwd).is_dir():
        raise GenEmotionError(f"machine {here} has no folder {cwd} (where the command runs): {SHARED}")
    with contextlib.chdir(cwd):
        if not (pending.run_dir / CV_SETTINGS).is_file():
            raise GenEmotionError(f"machine {here} does not see the cv folder {pending.run_dir}: {SHARED}")
        data = Path(pending.source.data).expanduser()
        if pending.local_data and not data.exists():  # a dataset id is loaded on each machine (its own cache)
            raise GenEmotionError(f"machine {here} does not see the data folder {data}: {SHARED}")
        setup_logging(pending.run_dir)
        launcher = pending.launcher
        if launcher.processes > 1 and launcher.machines is None:  # trainings side by side: a rendezvous port each
            launcher = replace(launcher, main_process_port=free_port())
        os.environ["OMP_NUM_THREADS"] = str(threads.count)  # for the fold's step processes too
        with threads.applied():
            train_pending_fold(pending, k, launcher)


def one_line(err: BaseException) -> str:
    """What a Ray task or actor error says, in one line: the original ``GenEmotionError``'s message, else the first
    line of what the failed process raised, or how it died."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, GenEmotionError):
        return str(cause)
    if isinstance(cause, BaseException):
        lines = str(cause).strip().splitlines()
        return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def run_folds(pending: PendingFolds, side_by_side: int, address: str | None, wants_gpu: bool) -> None:
    """Train ``pending``'s folds as Ray tasks, ``side_by_side`` at a time; one line naming the folds that failed
    once every other has ended (the finished ones are kept)."""
    if side_by_side < 1:
        raise GenEmotionError(f"--parallel-folds must be at least 1, got {side_by_side}")
    with ray_session(address) as ray:
        side_by_side = min(side_by_side, len(pending.indices))
        share = share_of(ray, side_by_side, pending.launcher.gpus, wants_gpu)
        threads = Threads.of_this_process(with_torch=wants_gpu)
        task = ray.remote(fold_task).options(
            **share.options(), max_retries=FOLD_RETRIES, runtime_env=threads.runtime_env()
        )
        log.info(
            "training folds %s on Ray, %d at a time, each with %s, computing with %d thread(s) as this process does",
            ", ".join(map(str, pending.indices)),
            side_by_side,
            share.describe(),
            threads.count,
        )
        waiting, running, failed = list(pending.indices), {}, {}
        try:
            while waiting or running:
                while waiting and len(running) < side_by_side:
                    k = waiting.pop(0)
                    running[task.remote(pending, k, os.getcwd(), threads)] = k
                done, _ = ray.wait(list(running), num_returns=1)
                k = running.pop(done[0])
                try:
                    ray.get(done[0])
                    log.info("fold %d/%d: done", k + 1, pending.folds)
                except ray.exceptions.RayError as err:
                    failed[k] = one_line(err)
                    log.error("fold %d/%d (fold-%d) failed: %s", k + 1, pending.folds, k, failed[k])
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
    if failed:
        kept = len(pending.indices) - len(failed)
        named = "; ".join(f"fold-{k} failed: {failed[k]}" for k in sorted(failed))
        raise GenEmotionError(f"{named}; the {kept} other fold(s) are saved: run the same command again to retry")


def parallel_folds(side_by_side: int, address: str | None, wants_gpu: bool) -> Any:
    """``run_cv``'s ``parallel``: the folds still to train, run as Ray tasks (``run_folds``)."""

    def run(pending: PendingFolds) -> None:
        run_folds(pending, side_by_side, address, wants_gpu)

    return run
