"""The Dask client of a run: an embedded LocalCluster of worker processes, or an
existing cluster at a scheduler address."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager


class ClusterError(RuntimeError):
    """No Dask cluster could be reached or started; the message says what to do."""


def default_workers() -> int:
    """One worker process per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _worker_env(workers: int) -> dict[str, str]:
    """Share the cores between worker processes instead of each taking all of them."""
    threads = str(max(1, default_workers() // workers))
    return {
        "OMP_NUM_THREADS": threads,
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, timeout: float = 5):
    """A connected ``distributed.Client``; closes what it started on exit.

    With `scheduler` it connects to that address (``tcp://host:port``) and fails with
    `ClusterError` within `timeout` seconds when nothing answers; otherwise it starts a
    LocalCluster of `workers` single-threaded worker processes.
    """
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise ClusterError(
                f"No Dask scheduler answered at {scheduler} within {timeout:g} s ({error}). "
                "Start one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                "or leave out --scheduler to run on this machine."
            ) from None
        with client:
            yield client
        return
    n = default_workers() if workers is None else workers
    if n < 1:
        raise ClusterError(f"--workers must be at least 1, got {n}.")
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        env=_worker_env(n),
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
