"""Runs shard tasks in this process, in a pool of local processes, or on a Ray cluster.

Every executor runs the same ``ShardTaskRunner`` on the same tasks and each task
commits its own output, so the shards are byte-identical whichever runs them,
and a task finished before a crash is kept whichever ran it.  Only a bounded
window of tasks is in flight, so the records of a 2.7M-image split are never
all serialised at once.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from vlconvert.errors import BuildFailed, VLConvertError
from vlconvert.pipeline.shard_task import ShardTaskRunner, WorkerConfig, init_worker, run_task
from vlconvert.pipeline.task_result import ShardResult
from vlconvert.records import Record

_RESUME_HINT = "finished shards are kept: rerun the same command to resume"

# (split, task index, the task's records in write order)
Work = Iterable[tuple[str, int, Sequence[Record]]]


def run_tasks(config: WorkerConfig, work: Work, executor: str = "local", workers: int | None = None,
              ray_address: str | None = None) -> Iterator[ShardResult]:
    # ``executor`` is one of options.EXECUTORS: build() checked it with every other option.
    if executor == "ray":
        return _run_ray(config, work, workers, ray_address)
    return _run_local(config, work, workers or 1)


def _run_local(config: WorkerConfig, work: Work, workers: int) -> Iterator[ShardResult]:
    if workers == 1:
        runner = ShardTaskRunner(config)
        for split, index, records in work:
            yield runner.run(split, index, records)
        return
    # spawn, not fork: the parent holds Arrow thread pools that do not survive fork.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                               initargs=(config, os.getpid()))
    try:
        pending = set()
        for split, index, records in work:
            if len(pending) >= 2 * workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in finished)
            pending.add(pool.submit(run_task, split, index, records))
        for future in pending:
            yield future.result()
    except BrokenProcessPool:
        raise BuildFailed(f"a worker process died (out of memory or killed); {_RESUME_HINT}") from None
    finally:
        # On Ctrl-C or an error, queued tasks are dropped; running ones finish and commit.
        pool.shutdown(wait=True, cancel_futures=True)


def _check_reachable(address: str | None) -> None:
    """Fail fast on a wrong HOST:PORT: Ray itself retries a dead address for minutes."""
    host, sep, port = (address or "").rpartition("://")[2].rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" or nothing: Ray's own lookup
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise VLConvertError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from None


class RayShardTaskRunner:
    """A Ray actor holding one ShardTaskRunner, so templates are compiled once per worker, not per task."""

    def __init__(self, config: WorkerConfig):
        self.runner = ShardTaskRunner(config)

    def run(self, split: str, index: int, records: Sequence[Record]) -> ShardResult:
        return self.runner.run(split, index, records)


def check_ray(address: str | None) -> None:
    """Ray is installed and, for a HOST:PORT address, something answers there."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise VLConvertError("--executor ray needs Ray: pip install 'vlconvert[ray]'") from None
    _check_reachable(address)


def _run_ray(config: WorkerConfig, work: Work, workers: int | None, address: str | None) -> Iterator[ShardResult]:
    try:
        import ray
    except ImportError:
        raise VLConvertError("--executor ray needs Ray: pip install 'vlconvert[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        _check_reachable(address)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise VLConvertError(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS / a new local instance'}: {exc}") from None
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Tasks that die with their node are retried on another one; committed work is never redone.
        actor_class = ray.remote(num_cpus=1, max_restarts=3, max_task_retries=3)(RayShardTaskRunner)
        actors = [actor_class.remote(config) for _ in range(count)]
        slots = actors * 2  # one task running and one queued per actor hides the transfer of records
        in_flight: dict = {}

        def collect() -> ShardResult:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            slots.append(in_flight.pop(ready[0]))
            try:
                return ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, (OSError, VLConvertError)):
                    raise exc.cause from None  # the task's own error, e.g. a full disk
                raise BuildFailed(f"a shard task failed on the Ray cluster: {exc.cause or exc}; {_RESUME_HINT}") from None
            except ray.exceptions.RayError as exc:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BuildFailed(f"a Ray worker was lost ({first_line}); {_RESUME_HINT}") from None

        for split, index, records in work:
            if not slots:
                yield collect()
            actor = slots.pop()
            in_flight[actor.run.remote(split, index, list(records))] = actor
        while in_flight:
            yield collect()
    finally:
        if started_here:
            ray.shutdown()
