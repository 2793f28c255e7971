"""Asynchronous checkpoints (``default_hooks.checkpoint.async: true``).

Training stops only while the state is copied into host memory: the main thread writes
the small files with Accelerate's own ``save_accelerator_state`` (schedulers, samplers,
RNG states, loss scaler) and accelwrap's own parts into ``.tmp-<name>``, and clones every
model's and optimizer's ``state_dict`` to CPU (:func:`snapshot`). A background thread
then writes the weights and optimizer states under Accelerate's file names and formats
(``model.safetensors``, ``optimizer.bin``, ...), fsyncs and sums them, writes the
manifest and publishes the folder exactly as a synchronous save does (the ``.tmp`` +
rename scheme: a kill during the background write leaves the previous checkpoint). The
folder stays loadable by a plain ``accelerator.load_state``.

The next save, a load, the run's end and a preemption exit wait for the background
write (:meth:`AsyncWriter.wait`); its failure is reported there, as a synchronous one.
A run with more than one process, or FSDP, saves synchronously (a logged note): no
collective runs in the background thread.

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
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelwrap.runner.checkpoint_parts import save_own_files

__all__ = ["AsyncWriter", "async_refusal", "save_in_background", "snapshot", "take_snapshot",
           "write_big_files", "write_small_files"]

logger = logging.getLogger("accelwrap")


def snapshot(obj: Any) -> Any:
    """A deep copy of a (nested) state dict whose tensors are detached CPU clones."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((key, snapshot(value)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(value) for value in obj)
    return copy.deepcopy(obj)


def async_refusal(accelerator: Any) -> str | None:
    """Why this run cannot save asynchronously (None: it can)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return ("default_hooks.checkpoint.async: true is not supported under FSDP "
                "(sharded state needs DCP's async save); saving synchronously")
    if accelerator.num_processes > 1:
        return (f"default_hooks.checkpoint.async: true is supported on 1 process only "
                f"(this run has {accelerator.num_processes}); saving synchronously")
    return None


def write_small_files(accelerator: Any, folder: Path) -> None:
    """Main thread: Accelerate's files other than weights and optimizers, with the RNG
    states of this moment."""
    from accelerate.checkpointing import save_accelerator_state

    save_accelerator_state(str(folder), [], [], accelerator._schedulers,
                           accelerator._dataloaders, accelerator.state.process_index,
                           accelerator.step, accelerator.scaler, safe_serialization=True)
    accelerator.project_configuration.iteration += 1  # as save_state does


def take_snapshot(accelerator: Any) -> tuple[list[Any], list[Any]]:
    """Main thread: CPU copies of every prepared model's and optimizer's state dict."""
    weights = [snapshot(accelerator.get_state_dict(model, unwrap=False))
               for model in accelerator._models]
    optimizers = [snapshot(opt.state_dict()) for opt in accelerator._optimizers]
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


def save_in_background(manager: Any, tmp: Path, final: Path, state: dict[str, Any], loop: Any,
                       replaces: str | None, on_error: Callable[[BaseException], None]) -> None:
    """Snapshot into ``tmp`` and host memory now; write, seal and publish in the background.

    Args:
        manager: The run's ``CheckpointManager`` (its save stages, its writer).
        tmp: The temporary folder.
        final: The folder it becomes.
        state: The runner state (deep-copied here: training goes on changing its sources).
        loop: The training loop, for accelwrap's own parts.
        replaces: As in ``CheckpointManager.save``.
        on_error: Given the background failure when it is waited for.
    """
    acc, new_directory = manager.accelerator, not manager.directory.is_dir()

    def write_small() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write_small_files(acc, tmp)
        save_own_files(loop, tmp)

    manager._stage(write_small, tmp)
    weights, optimizers = take_snapshot(acc)
    state = copy.deepcopy(state)

    def work() -> None:
        manager._stage(lambda: write_big_files(tmp, weights, optimizers), tmp)
        manager._finish(tmp, final, state, replaces, new_directory)

    manager._writer.start(work, on_error)
