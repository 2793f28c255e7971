"""The processes of an asynchronous checkpoint agree in the background, on groups of their own.

A background checkpoint write (:mod:`accelwrap.runner.async_save`) with several processes
must learn whether every process wrote its files before rank 0 publishes the folder, while
the main threads go on training with collectives on the default process group. Two
threads issuing collectives on one group can interleave them (a deadlock, or sums of the
wrong tensors), so the background thread never touches the default group: it talks on
gloo groups created once, collectively, in the main thread at the first asynchronous
save (:class:`WriterGroups`), each used by one background task only (the agreement; one
DCP save per sharded model and optimizer). gloo runs on the CPU whatever the training
backend (NCCL included), and its groups reach every rank of every node, so a work dir
local to each node works as it does for a synchronous save: each process writes its own
files, rank 0 seals and publishes what its node sees, and every rank learns the outcome.

Example:
    >>> groups = WriterGroups()   # one process: no group is ever created
    >>> groups.get(0, world_size=1) is None
    True
    >>> agree_on(None, ('write', 'disk full'), world_size=1)
    [('write', 'disk full')]
"""

from __future__ import annotations

from typing import Any

__all__ = ["WriterGroups", "agree_on", "stage_sharded"]


class WriterGroups:
    """gloo process groups for background checkpoint work, created on first use.

    :meth:`get` is collective the first time an index is asked for (``new_group``): call it
    in the main thread, on every process, in the same order (a save is collective, so the
    first asynchronous save is such a point). Later calls only look the group up.
    """

    def __init__(self) -> None:
        self._groups: list[Any] = []

    def get(self, index: int, world_size: int) -> Any:
        """Group ``index`` (creating groups up to it); None with one process."""
        if world_size <= 1:
            return None
        import torch.distributed as dist

        while len(self._groups) <= index:
            self._groups.append(dist.new_group(backend="gloo"))
        return self._groups[index]


def agree_on(group: Any, report: tuple[str, str] | None, world_size: int) -> list[tuple[str, str]]:
    """Every process's failure report of a background stage, over ``group`` (collective).

    Args:
        group: A :class:`WriterGroups` group (None with one process).
        report: This process's ``(kind, text)`` -- kind ``'write'`` (a write error:
            ``on_error`` decides) or ``'fatal'`` (anything else: re-raised) -- or None
            when it succeeded.
        world_size: The number of processes.

    Returns:
        The reports of the processes that failed, by rank (empty: all succeeded).
    """
    if world_size <= 1:
        return [report] if report is not None else []
    import torch.distributed as dist

    reports: list[Any] = [None] * world_size
    dist.all_gather_object(reports, report, group=group)
    return [r for r in reports if r is not None]


def _host_stager() -> Any:
    """A DCP stager that copies into plain host memory, synchronously, and keeps its buffers
    for the next save of the same tensors; None where torch lacks it (DCP's default stager
    then allocates new host memory at every save)."""
    try:
        from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions
    except ImportError:
        return None
    return DefaultStager(StagingOptions(use_pinned_memory=False, use_shared_memory=False,
                                        use_async_staging=False, use_non_blocking_copy=False))


def stage_sharded(accelerator: Any, folder: Any, groups: WriterGroups,
                  stagers: dict[int, Any]) -> list[Any]:
    """Main thread, FSDP ``SHARDED_STATE_DICT``: stage every model's and optimizer's shards
    into host memory and start their DCP ``async_save`` into Accelerate's folders
    (``pytorch_model_fsdp_<i>/``, ``optimizer_<i>/``), each on a group of its own.

    DCP copies the state into CPU memory before ``async_save`` returns, from the second save
    on into the host buffers of the first (``stagers``, one per job, kept by the caller:
    with fresh buffers a 54.6M-parameter FSDP2 save stalled training 0.72x a synchronous
    save, with kept ones 0.14x); its upload thread writes, fsyncs and exchanges the plans on
    the given group only. The caller waits for one save before it starts the next.

    Args:
        accelerator: The run's FSDP ``Accelerator``.
        folder: The checkpoint's temporary folder.
        groups: The writer's process groups.
        stagers: The writer's DCP stagers by job, filled on the first save.

    Returns:
        The futures of the uploads (wait for them in the background).
    """
    import torch.distributed.checkpoint as dcp
    from accelerate.utils.constants import FSDP_MODEL_NAME, OPTIMIZER_NAME
    from accelerate.utils.fsdp_utils import _get_model_state_dict, _prepare_sd_options
    from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    plugin, world = accelerator.state.fsdp_plugin, accelerator.num_processes
    options = _prepare_sd_options(plugin)
    jobs = [(f"{FSDP_MODEL_NAME}_{i}", "model", _get_model_state_dict(model, sd_options=options))
            for i, model in enumerate(accelerator._models)]
    jobs += [(f"{OPTIMIZER_NAME}_{i}", "optimizer",
              get_optimizer_state_dict(accelerator._models[i], opt, options=options))
             for i, opt in enumerate(accelerator._optimizers)]
    futures = []
    for index, (name, key, state) in enumerate(jobs, start=1):  # group 0: the agreement
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        if index not in stagers:
            stagers[index] = _host_stager()
        futures.append(dcp.async_save({key: state}, storage_writer=dcp.FileSystemWriter(target),
                                      planner=DefaultSavePlanner(),
                                      process_group=groups.get(index, world),
                                      async_stager=stagers[index]))
    return futures
