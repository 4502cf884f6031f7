"""Dask schedulers and clusters for blockwise runs, from one string.

``scheduler`` strings understood by :func:`get_client` (and by every blockwise function):

===========================  ======================================================
``"threads"`` (default)      Dask's local thread pool in this process (no client).
``"synchronous"``            One block after another in this thread: for debugging.
``"processes"``, ``"local"`` A :class:`distributed.LocalCluster` of worker processes
``"local:N"``                (``N`` of them; default ``n_workers`` or one per core).
``"tcp://HOST:PORT"``        A running Dask scheduler (any ``PROTOCOL://`` address).
``"slurm"``, ``"slurm:N"``   ``N`` SLURM jobs through dask-jobqueue (see below).
``"kubernetes[:N]"``         ``N`` pods through dask-kubernetes (see below).
===========================  ======================================================

A :class:`distributed.Client` may be passed instead of a string; it is used as is and left
open. Everything else the context manager starts, it closes.

Threads and GPUs
----------------
Blockwise functions run where the scheduler puts them and are free to use a GPU (CUDA)
when one is present; nothing here forces the CPU. With ``"threads"`` all blocks run in
this one process, so a model loaded once (e.g. held in a closure or module-level cache)
is shared by every thread — use few threads per GPU (``n_workers=1`` or 2) so blocks do
not compete for GPU memory. With processes each worker loads its own copy; give each
worker one GPU (e.g. ``CUDA_VISIBLE_DEVICES`` per worker) and one thread.

SLURM (``pip install vemkit[cluster]``)
---------------------------------------
::

    with get_client(
        "slurm:8",  # eight jobs, each one Dask worker
        cluster_kwargs={"queue": "gpu", "cores": 8, "memory": "64GB",
                        "walltime": "04:00:00", "job_extra_directives": ["--gres=gpu:1"]},
    ) as client:
        map_layer(fn, raw, out, block_shape=(64, 256, 256), scheduler=client)

``cluster_kwargs`` go to :class:`dask_jobqueue.SLURMCluster`; the target and the
``.vemkit-blockwise`` state must live on a file system all nodes see. Or start a
scheduler yourself (``dask scheduler`` plus ``sbatch`` jobs running ``dask worker ADDRESS``)
and pass ``"tcp://HOST:8786"``.

Kubernetes (``pip install vemkit[cluster]``)
--------------------------------------------
::

    with get_client("kubernetes:4", cluster_kwargs={"name": "vemkit",
                    "image": "ghcr.io/dask/dask:latest"}) as client:
        ...

``cluster_kwargs`` go to :class:`dask_kubernetes.operator.KubeCluster` (the operator must
be installed in the cluster); data must be on storage all pods mount (or object storage).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from vemkit.errors import ConfigError, MissingDependencyError

__all__ = ["LOCAL_SCHEDULERS", "get_client", "is_local_scheduler"]

logger = logging.getLogger(__name__)

#: Scheduler names that run in this process, without a distributed client.
LOCAL_SCHEDULERS = ("threads", "synchronous", "sync", "single-threaded")


def is_local_scheduler(scheduler: Any) -> bool:
    """Whether ``scheduler`` runs blocks in this process (None, "threads", "synchronous")."""
    return scheduler is None or (isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS)


@contextmanager
def get_client(
    scheduler: Any = None,
    *,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | float | None = "auto",
    cluster_kwargs: dict[str, Any] | None = None,
    dashboard_address: str | None = None,
) -> Iterator[Any]:
    """Open the Dask client for ``scheduler`` (None for local schedulers); close on exit.

    Parameters
    ----------
    scheduler : str, distributed.Client or None
        See the module docstring for the strings understood.
    n_workers : int, optional
        Worker processes of a local cluster (default: one per CPU core), or jobs / pods for
        SLURM and Kubernetes when the string gives no ``:N``.
    threads_per_worker : int
        Threads in each worker process of a local cluster.
    memory_limit : str, float or None
        Memory limit per local worker (``"4GB"``, a fraction of the machine, ``"auto"``
        = an equal share, None = no limit).
    cluster_kwargs : dict, optional
        Extra arguments of the cluster class (LocalCluster, SLURMCluster, KubeCluster).
    dashboard_address : str, optional
        Address of the Dask dashboard of a local cluster (``":8787"``); off by default.

    Yields
    ------
    distributed.Client or None
        None for ``"threads"`` and ``"synchronous"``.

    Raises
    ------
    ConfigError
        An unknown scheduler string.
    MissingDependencyError
        ``distributed``, ``dask-jobqueue`` or ``dask-kubernetes`` is not installed.

    Examples
    --------
    >>> with get_client("threads") as client:
    ...     client is None
    True
    """
    if is_local_scheduler(scheduler):
        yield None
        return
    if not isinstance(scheduler, str):
        if hasattr(scheduler, "submit") and hasattr(scheduler, "scheduler_info"):
            yield scheduler  # the caller's client: the caller closes it
            return
        raise ConfigError(
            f"scheduler must be a string or a distributed.Client, got {type(scheduler).__name__}"
        )
    kind, count = _parse(scheduler)
    count = count if count is not None else n_workers
    extra = dict(cluster_kwargs or {})
    with ExitStack() as stack:
        if kind == "address":
            client_cls = _import_distributed().Client
            logger.info("connecting to the Dask scheduler at %s", scheduler)
            client = stack.enter_context(client_cls(scheduler))
        elif kind == "local":
            distributed = _import_distributed()
            workers = count if count is not None else max(1, os.cpu_count() or 1)
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker,
                    processes=True,
                    memory_limit=memory_limit,
                    dashboard_address=dashboard_address,
                    **extra,
                )
            )
            logger.info("started a local Dask cluster of %d processes", workers)
            client = stack.enter_context(distributed.Client(cluster))
        elif kind == "slurm":
            distributed = _import_distributed()
            jobqueue = _import_extra("dask_jobqueue", "SLURM clusters")
            cluster = stack.enter_context(jobqueue.SLURMCluster(**extra))
            cluster.scale(jobs=count or 1)
            logger.info("requested %d SLURM jobs: %s", count or 1, cluster.job_script())
            client = stack.enter_context(distributed.Client(cluster))
        else:  # kubernetes
            distributed = _import_distributed()
            kubernetes = _import_extra("dask_kubernetes.operator", "Kubernetes clusters")
            cluster = stack.enter_context(kubernetes.KubeCluster(**extra))
            cluster.scale(count or 1)
            client = stack.enter_context(distributed.Client(cluster))
        yield client


def _parse(scheduler: str) -> tuple[str, int | None]:
    text = scheduler.strip()
    if "://" in text:
        return "address", None
    name, _, number = text.partition(":")
    name = name.lower()
    kinds = {"processes": "local", "local": "local", "slurm": "slurm", "kubernetes": "kubernetes"}
    if name not in kinds or (number and not number.isdigit()) or number == "0":
        raise ConfigError(
            f"unknown scheduler {scheduler!r}; use 'threads', 'synchronous', 'processes', "
            "'local:N', 'slurm:N', 'kubernetes:N' or a scheduler address such as "
            "'tcp://host:8786'"
        )
    return kinds[name], int(number) if number else None


def _import_distributed() -> Any:
    return _import_extra("distributed", "process and cluster schedulers")


def _import_extra(module: str, feature: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{feature} need the Python package {module.partition('.')[0]!r}, which is not "
            "installed; install it with: pip install 'vemkit[cluster]'"
        ) from error
