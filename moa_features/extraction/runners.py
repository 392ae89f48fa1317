"""Where the chunks run: joblib processes on this machine, or a Dask cluster.

Each runner takes the tasks (argument tuples of :func:`~moa_features.extraction.worker.process_chunk`)
and yields the :class:`~moa_features.extraction.worker.ChunkResult` of each as it finishes, in
any order; the caller writes them by chunk index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from moa_features._optional import require
from moa_features.extraction.worker import ChunkResult, process_chunk


def run_joblib(tasks: list[tuple], n_jobs: int) -> Iterator[ChunkResult]:
    """Run ``tasks`` in this process (``n_jobs=1``) or on ``n_jobs`` joblib worker processes."""
    if n_jobs == 1:
        for task in tasks:
            yield process_chunk(*task)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator_unordered", pre_dispatch="2*n_jobs")
    yield from parallel(delayed(process_chunk)(*task) for task in tasks)


def run_dask(tasks: list[tuple], scheduler: str, n_jobs: int) -> Iterator[ChunkResult]:
    """Submit one future per chunk; results arrive as they complete.

    ``scheduler``: ``"local"`` (a LocalCluster of ``n_jobs`` workers) or ``tcp://HOST:PORT``.
    dask.distributed reschedules the task of a lost worker, and chunks are written by index,
    so a worker lost mid-run neither loses nor duplicates rows.
    """
    distributed = require("dask.distributed", extra="dask", purpose="extract --scheduler")
    Client, LocalCluster, as_completed = distributed.Client, distributed.LocalCluster, distributed.as_completed

    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = [
            client.submit(process_chunk, *task, key=f"moa-chunk-{task[0]}-{task_token(task)}", pure=False)
            for task in tasks
        ]
        for future in as_completed(futures):
            yield future.result()
            future.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def task_token(task: tuple) -> str:
    """A short hash of a task's chunk index and site ids (part of its Dask key)."""
    return hashlib.sha1(repr((task[0], [s.site_id for s in task[1]])).encode()).hexdigest()[:12]
