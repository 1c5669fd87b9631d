"""Where a sweep's trials run: one after another in the sweep's own process, ``--parallel N`` local processes on the
shared study, or ``--parallel N --ray-address ADDR`` Ray tasks, each asking for what its recipe needs (the GPUs of a
transformers recipe where the cluster has them, a share of the CPUs: ``distributed.cluster.share_of``).

Each runs ``trial.run_trial``, which tells the study itself; the pool only hands back each job as it ends, with the
error of a process or task that died before it could tell (``Finished.error``: the sweep records it as the trial's
failure).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gen_emotion.sweeps.trial import TrialJob, one_line, run_trial, trial_task

log = logging.getLogger(__name__)


@dataclass
class Finished:
    """A job that ended: what ``run_trial`` returned, or why its process or task died first."""

    job: TrialJob
    outcome: dict[str, Any] | None
    error: str | None = None


class InlinePool:
    """Trials one after another in this process."""

    size = 1

    def __init__(self) -> None:
        self.done: list[Finished] = []

    @property
    def busy(self) -> int:
        return len(self.done)

    def submit(self, job: TrialJob) -> None:
        self.done.append(Finished(job, run_trial(job)))

    def wait(self) -> Finished:
        return self.done.pop(0)


class ProcessPool:
    """Trials in ``size`` local processes (spawned: each imports the toolkit afresh), on the shared study."""

    def __init__(self, executor: Any, size: int) -> None:
        self.executor, self.size = executor, size
        self.running: dict[Any, TrialJob] = {}

    @property
    def busy(self) -> int:
        return len(self.running)

    def submit(self, job: TrialJob) -> None:
        self.running[self.executor.submit(trial_task, job, os.getcwd())] = job

    def wait(self) -> Finished:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
        future = next(iter(done))
        job = self.running.pop(future)
        try:
            return Finished(job, future.result())
        except Exception as err:  # the process died (killed, out of memory): the trial could not tell
            return Finished(job, None, f"its process died ({one_line(err)})")


class RayPool:
    """Trials as Ray tasks, ``size`` at a time, each with its share of the cluster."""

    def __init__(self, ray: Any, size: int, options: dict[str, Any]) -> None:
        self.ray, self.size = ray, size
        self.task = ray.remote(trial_task).options(**options, max_retries=0)
        self.running: dict[Any, TrialJob] = {}

    @property
    def busy(self) -> int:
        return len(self.running)

    def submit(self, job: TrialJob) -> None:
        self.running[self.task.remote(job, os.getcwd())] = job

    def wait(self) -> Finished:
        from gen_emotion.distributed.cluster import one_line as ray_line

        done, _ = self.ray.wait(list(self.running), num_returns=1)
        job = self.running.pop(done[0])
        try:
            return Finished(job, self.ray.get(done[0]))
        except self.ray.exceptions.RayError as err:
            return Finished(job, None, f"its Ray task died ({ray_line(err)})")

    def cancel(self) -> None:
        for ref in self.running:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)


@contextlib.contextmanager
def trial_pool(parallel: int, ray_address: str | None, wants_gpu: bool) -> Iterator[Any]:
    """The pool for ``--parallel`` and ``--ray-address`` (module docstring)."""
    if ray_address is not None:
        from gen_emotion.distributed.cluster import ray_session, share_of

        with ray_session(ray_address) as ray:
            share = share_of(ray, parallel, 1, wants_gpu)
            log.info("trials on Ray, %d at a time, each with %s", parallel, share.describe())
            pool = RayPool(ray, parallel, share.options())
            try:
                yield pool
            finally:
                pool.cancel()
        return
    if parallel == 1:
        yield InlinePool()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    log.info("trials in %d local processes at a time, on the shared study", parallel)
    with ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield ProcessPool(executor, parallel)
