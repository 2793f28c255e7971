"""Asynchronous checkpoints (``default_hooks.checkpoint.async: true``), 1 or more processes.

Training stops only while the state is copied into host memory. In the main thread, on
every process: Accelerate's own ``save_accelerator_state`` writes the small files
(schedulers, samplers, this rank's RNG state, loss scaler) and accelwrap its own parts
into ``.tmp-<name>``; the process that writes the weights (rank 0 with DDP) clones every
model's and optimizer's ``state_dict`` to CPU (:func:`snapshot`); under FSDP
(``SHARDED_STATE_DICT``) every rank stages its shards with DCP's ``async_save``
(:func:`~accelwrap.runner.async_dist.stage_sharded`). A background thread per process
then writes its files under Accelerate's names and formats (``model.safetensors``,
``optimizer.bin``; DCP's ``pytorch_model_fsdp_0/``, ``optimizer_0/``); all processes agree
that every one succeeded (on a gloo group of their own, never the default one:
:mod:`accelwrap.runner.async_dist`); only then rank 0 checks, fsyncs and sums the files,
writes the manifest and publishes the folder exactly as a synchronous save does, and all
processes agree on that too. The folder is the one a synchronous save writes (a plain
``accelerator.load_state`` reads it); a kill during the background write, on any rank,
leaves the previous checkpoint ``latest``.

The next save, a load, the run's end and a preemption exit wait for the background write
(:meth:`AsyncWriter.wait`), where its failure is reported as a synchronous one is (one
line; ``on_error: raise`` stops the run, ``warn`` goes on). A preemption checkpoint whose
background write failed under ``warn`` is written again, synchronously, before the exit.
DeepSpeed, Megatron and FSDP without sharded DCP state save synchronously (a logged note).

Example:
    >>> import torch
    >>> state = {'w': torch.ones(2), 'groups': [{'lr': 0.1}]}
    >>> copy = snapshot(state)
    >>> state['w'] += 1
    >>> copy['w'].tolist(), copy['groups'][0]['lr']
    ([1.0, 1.0], 0.1)
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError
from accelwrap.runner.async_dist import WriterGroups, agree_on, stage_sharded
from accelwrap.runner.checkpoint_layout import Layout
from accelwrap.runner.checkpoint_parts import save_own_files
from accelwrap.runner.fault_points import kill_point
from accelwrap.runner.manifest import without_zip_crc
from accelwrap.runner.publish import seal
from accelwrap.runner.save_failure import describe_error, is_write_error

__all__ = ["AsyncSaveFailed", "AsyncWriter", "async_refusal", "save_in_background", "snapshot",
           "take_snapshot", "write_big_files", "write_small_files"]

logger = logging.getLogger("accelwrap")


class AsyncSaveFailed(Exception):
    """A background write failed on some process (``reports``: one line per process)."""

    def __init__(self, reports: list[str]) -> None:
        super().__init__("; ".join(reports))
        self.reports = reports


def snapshot(obj: Any, buffers: list[Any] | None = None) -> Any:
    """A deep copy of a (nested) state dict whose tensors are detached CPU copies.

    Args:
        obj: The state dict (tensors, dicts, lists, tuples, plain values).
        buffers: Host tensors of the previous snapshot, in the order its tensors were met,
            which it no longer needs (its write has ended); a tensor of the same shape and
            dtype is copied into its buffer instead of a new one (no fresh pages to fault
            in: most of a clone's cost). The list is replaced by this snapshot's tensors.
    """
    import torch

    old = iter(buffers or [])
    new: list[Any] = []

    def copy_of(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            buffer = next(old, None)
            value = value.detach()
            if (buffer is not None and buffer.shape == value.shape
                    and buffer.dtype == value.dtype):
                copied = buffer.copy_(value)
            else:
                copied = value.to("cpu", copy=True)
            new.append(copied)
            return copied
        if isinstance(value, dict):
            return type(value)((key, copy_of(item)) for key, item in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(copy_of(item) for item in value)
        return copy.deepcopy(value)

    result = copy_of(obj)
    if buffers is not None:
        buffers[:] = new
    return result


def async_refusal(accelerator: Any) -> str | None:
    """Why this run cannot save asynchronously (None: it can)."""
    engine = Layout.of(accelerator, 0, 0, 0).engine
    if engine == "fsdp_sharded" and accelerator.state.fsdp_plugin.fsdp_version == 2:
        return None
    if engine == "plain" and "XLA" not in str(accelerator.distributed_type):
        return None
    return ("default_hooks.checkpoint.async: true is supported with one process, DDP and "
            "FSDP2 with fsdp_state_dict_type SHARDED_STATE_DICT (this run: "
            f"{getattr(accelerator.distributed_type, 'value', accelerator.distributed_type)}"
            f", {engine}); saving synchronously")


def _writes_shared(accelerator: Any) -> bool:
    """Whether this process writes the files every process holds alike (weights, ...)."""
    on_each_node = getattr(accelerator.project_configuration, "save_on_each_node", False)
    return accelerator.is_main_process or (on_each_node and accelerator.is_local_main_process)


def write_small_files(accelerator: Any, folder: Path) -> None:
    """Main thread: Accelerate's files other than weights and optimizers, with the RNG
    states of this moment."""
    from accelerate.checkpointing import save_accelerator_state

    with without_zip_crc():
        save_accelerator_state(str(folder), [], [], accelerator._schedulers,
                               accelerator._dataloaders, accelerator.state.process_index,
                               accelerator.step, accelerator.scaler, safe_serialization=True)
    accelerator.project_configuration.iteration += 1  # as save_state does


def take_snapshot(accelerator: Any,
                  buffers: list[Any] | None = None) -> tuple[list[Any], list[Any]]:
    """Main thread: CPU copies of every prepared model's and optimizer's state dict (into
    ``buffers``, the previous snapshot's host tensors, where they fit: :func:`snapshot`)."""
    state = ([accelerator.get_state_dict(model, unwrap=False) for model in accelerator._models],
             [opt.state_dict() for opt in accelerator._optimizers])
    weights, optimizers = snapshot(state, buffers)
    return weights, optimizers


def write_big_files(folder: Path, weights: list[Any], optimizers: list[Any]) -> None:
    """Background thread: the snapshot, under Accelerate's names and formats."""
    from accelerate.utils import save
    from accelerate.utils.constants import OPTIMIZER_NAME, SAFE_WEIGHTS_NAME

    for i, state in enumerate(weights):
        name = SAFE_WEIGHTS_NAME if i == 0 else SAFE_WEIGHTS_NAME.replace(".", f"_{i}.")
        save(state, folder / name, safe_serialization=True)
    for i, state in enumerate(optimizers):
        name = f"{OPTIMIZER_NAME}.bin" if i == 0 else f"{OPTIMIZER_NAME}_{i}.bin"
        with without_zip_crc():  # as a synchronous save: the manifest sums the file
            save(state, folder / name, safe_serialization=False)


class AsyncWriter:
    """One background checkpoint write at a time.

    Example:
        >>> writer = AsyncWriter()
        >>> writer.start(lambda: None, lambda err: None)
        >>> writer.wait()
        >>> writer.busy
        False
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._on_error: Callable[[BaseException], None] | None = None
        self.groups = WriterGroups()  # the background agreement's and DCP's gloo groups
        self.buffers: list[Any] = []  # host tensors of the last snapshot, reused by the next
        self.stagers: dict[int, Any] = {}  # FSDP: DCP's stagers, which keep their host copies

    @property
    def busy(self) -> bool:
        """Whether a background write has been started and not yet waited for."""
        return self._thread is not None

    def start(self, work: Callable[[], None],
              on_error: Callable[[BaseException], None]) -> None:
        """Run ``work`` in a background thread (waits for the previous one first).

        Args:
            work: The write; any exception it raises is kept for :meth:`wait`.
            on_error: Called by :meth:`wait`, in the caller's thread, with that exception.
        """
        self.wait()
        self._error, self._on_error = None, on_error

        def body() -> None:
            try:
                work()
            except BaseException as err:  # reported by wait(), in the training thread
                self._error = err

        # Not a daemon: an interpreter that exits still lets the write finish.
        self._thread = threading.Thread(target=body, name="accelwrap-checkpoint")
        self._thread.start()

    def wait(self) -> None:
        """Block until the background write ends; hand its failure to ``on_error``."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.join()
        error, self._error = self._error, None
        if error is not None and self._on_error is not None:
            self._on_error(error)


class _Attempt:
    """One process's try at a background stage: its report for the agreement, and the
    error itself when it is not a write error (re-raised where it happened)."""

    def __init__(self, work: Callable[[], Any], tmp: Path, rank: int, ranks: int) -> None:
        self.error: BaseException | None = None
        self.report: tuple[str, str] | None = None
        try:
            work()
        except BaseException as err:
            if is_write_error(err):
                self.report = ("write", describe_error(err, tmp, rank, ranks))
            else:
                self.error = err
                self.report = ("fatal", f"rank {rank}: {type(err).__name__}: {err}")

    def settle(self, group: Any, ranks: int) -> None:
        """Agree with every process (collective on ``group``); raise what any one hit."""
        reports = agree_on(group, self.report, ranks)
        if self.error is not None:
            raise self.error
        fatal = [text for kind, text in reports if kind == "fatal"]
        if fatal:
            raise CheckpointError("a background checkpoint write failed on another process: "
                                  + "; ".join(fatal))
        if reports:
            raise AsyncSaveFailed([text for _, text in reports])


def _check_and_publish(manager: Any, tmp: Path, final: Path, state: dict[str, Any],
                       replaces: str | None, new_directory: bool) -> None:
    """Rank 0, background: the files are all there; seal and publish (as a sync save)."""
    manager._check_written(tmp, final)
    manager._publish(tmp, final, replaces, new_directory, *seal(tmp, final, state))


def _snapshot_now(manager: Any, tmp: Path, loop: Any) -> Callable[[], None]:
    """Main thread, every process: the small files, and the state of the big ones in host
    memory. Returns the background writer of this process's big files."""
    acc = manager.accelerator

    def write_small() -> None:
        tmp.mkdir(parents=True, exist_ok=True)  # a node-local work dir on another node
        write_small_files(acc, tmp)
        save_own_files(loop, tmp)

    manager._stage(lambda: manager._make_folder(tmp), tmp)
    manager._stage(write_small, tmp)
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        futures = stage_sharded(acc, tmp, manager._writer.groups, manager._writer.stagers)
        return lambda: [future.result() for future in futures]
    if not _writes_shared(acc):
        return lambda: None
    weights, optimizers = take_snapshot(acc, manager._writer.buffers)
    return lambda: write_big_files(tmp, weights, optimizers)


def save_in_background(manager: Any, tmp: Path, final: Path, state: dict[str, Any], loop: Any,
                       replaces: str | None, policy: str) -> None:
    """Snapshot into ``tmp`` and host memory now; write, agree, seal and publish in the
    background. Collective: call on every process.

    Args:
        manager: The run's ``CheckpointManager`` (its save stages, its writer).
        tmp: The temporary folder.
        final: The folder it becomes.
        state: The runner state (deep-copied here: training goes on changing its sources).
        loop: The training loop, for accelwrap's own parts.
        replaces: As in ``CheckpointManager.save``.
        policy: ``default_hooks.checkpoint.on_error`` for a background failure.
    """
    acc = manager.accelerator
    rank, ranks, main = acc.process_index, acc.num_processes, acc.is_main_process
    group = manager._writer.groups.get(0, ranks)  # collective the first time: main thread
    new_directory = not manager.directory.is_dir()
    write_mine = _snapshot_now(manager, tmp, loop)
    state = copy.deepcopy(state)
    iteration = int(state["iter"])

    def mine() -> None:
        write_mine()
        kill_point(f"save-rank{rank}", iteration)  # test hook: one rank dies mid-write

    def work() -> None:
        _Attempt(mine, tmp, rank, ranks).settle(group, ranks)
        kill_point("save", iteration)
        publish = _Attempt(lambda: main and _check_and_publish(
            manager, tmp, final, state, replaces, new_directory), tmp, rank, ranks)
        publish.settle(group, ranks)

    manager._writer.start(work, _error_handler(manager, tmp, final, state, loop, replaces,
                                               policy))


def _error_handler(manager: Any, tmp: Path, final: Path, state: dict[str, Any], loop: Any,
                   replaces: str | None, policy: str) -> Callable[[BaseException], None]:
    """What :meth:`AsyncWriter.wait` does with a background failure (main thread, every
    process: they all got the same agreed reports)."""

    def on_error(err: BaseException) -> None:
        if not isinstance(err, AsyncSaveFailed):
            manager._remove_partial(tmp)
            raise err
        manager._failed(final.name, tmp, err, policy)  # raises under on_error: raise
        if _preempting(loop, state):
            _save_synchronously(manager, tmp, final, state, loop, replaces, policy)

    return on_error


def _preempting(loop: Any, state: dict[str, Any]) -> bool:
    """Whether the run stops for a preemption right after this checkpoint (same on every
    process: the watch agreed, and nothing trained since the snapshot)."""
    watch = getattr(loop, "preemption", None)
    return (watch is not None and watch.stopping
            and getattr(loop, "iter", None) == int(state["iter"]))


def _save_synchronously(manager: Any, tmp: Path, final: Path, state: dict[str, Any],
                        loop: Any, replaces: str | None, policy: str) -> None:
    """The preemption checkpoint's background write failed (``on_error: warn``): write it
    again, synchronously, so that the run does not exit without it."""
    if manager.accelerator.is_main_process:
        logger.warning("writing checkpoint %r again, synchronously, before the preemption "
                       "exit", final.name)
    try:
        manager._write(tmp, final, state, loop, replaces)
    except Exception as err:
        if getattr(err, "reports", None) is None:
            manager._remove_partial(tmp)
            raise
        manager._failed(final.name, tmp, err, policy)
