"""Atomic, resumable checkpoints: written directly, or through ``accelerator.save_state``.

Layout of ``<work_dir>/checkpoints``::

    iter_40/               one complete checkpoint (state files + runner_state.json)
    epoch_3/
    latest                 text file: the name of the newest complete checkpoint
    .tmp-iter_48/          a save in progress (or killed mid-way): never loaded

A save writes everything into ``.tmp-<name>`` (``runner_state.json`` last) and the
new pointer into ``.tmp-latest``, fsyncs all of it (every file and folder, concurrently:
see :mod:`accelwrap.runner.durable`), only then renames the folder into place and
swaps the pointer, and fsyncs the checkpoint folder so that both renames are durable
before ``save`` returns. A process killed at any moment leaves the previous checkpoint
loadable and ``latest`` pointing at a complete one. The runner's own state is JSON.

The state files come in one of two layouts, picked once per run from the
distributed type (:func:`accelwrap.runner.direct.uses_direct_layout`):

- single process and DDP: the *direct* layout, ``state.pt`` (every model, optimizer,
  scheduler, scaler and rank 0's RNG) plus ``rng_<rank>.pt`` per further rank, written
  and read by the runner itself (see :mod:`accelwrap.runner.direct`);
- FSDP, DeepSpeed, Megatron-LM, XLA (or objects registered for checkpointing):
  Accelerate's ``save_state``/``load_state`` layout, FSDP's sharded folders included.

Everything loads with ``weights_only=True``. A single-process or DDP run resumes
checkpoints of either layout (an Accelerate-layout folder goes through
``load_state``); an FSDP run refuses a direct one with a message saying so (its
weights still load with ``load_from``).

Example:
    >>> from accelwrap.runner.checkpoint import find_latest
    >>> find_latest('/nonexistent/checkpoints') is None
    True
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from accelwrap.runner.direct import DirectLayout, is_direct_checkpoint, uses_direct_layout
from accelwrap.runner.durable import fsync_all, tree_paths
from accelwrap.runner.weights import fingerprint_problems, load_weights

STATE_FILE = "runner_state.json"
LATEST_FILE = "latest"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
KILL_ENV = "ACCELWRAP_TEST_KILL"
LAYOUTS = ("auto", "accelerate")

__all__ = ["CheckpointManager", "find_latest", "fingerprint_problems", "is_complete", "kill_point",
           "load_weights", "merge_sharded", "read_state", "resolve_resume", "restore_rng",
           "rng_snapshot"]


def kill_point(stage: str, iteration: int) -> None:
    """Test hook: SIGKILL this process when ``$ACCELWRAP_TEST_KILL`` is ``stage:iteration``.

    Stages are ``iter`` (after an iteration's bookkeeping) and ``save`` (inside a
    checkpoint write, after the weights are on disk but before the rename).

    Args:
        stage: ``'iter'`` or ``'save'``.
        iteration: The current global iteration.
    """
    if os.environ.get(KILL_ENV) == f"{stage}:{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished checkpoint folder (renamed into place, state written)."""
    path = Path(path)
    return (path.is_dir() and not path.name.startswith((TMP_PREFIX, OLD_PREFIX))
            and (path / STATE_FILE).is_file())


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read the runner state stored in checkpoint folder ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint.
    """
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{str(path)!r} is not a complete accelwrap checkpoint "
                                f"(a folder containing {STATE_FILE})")
    return json.loads((path / STATE_FILE).read_text())


def _complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        if is_complete(child):
            found.append((int(read_state(child).get("iter", -1)), child))
    return sorted(found, key=lambda item: (item[0], item[1].stat().st_mtime))


def find_latest(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``directory``, or None.

    ``latest`` is trusted when it names a complete checkpoint; otherwise (a kill
    between rename and pointer update, or a damaged pointer) the complete
    checkpoint with the highest iteration wins.
    """
    directory = Path(directory)
    pointer = directory / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text().strip()
        if name and is_complete(directory / name):
            return directory / name
    found = _complete_checkpoints(directory)
    return found[-1][1] if found else None


def _discard(path: Path) -> None:
    """Delete a checkpoint folder; renamed first, so a kill mid-delete never leaves a
    gutted folder that still holds runner_state.json (it would look complete)."""
    old = path.with_name(f"{OLD_PREFIX}{path.name}")
    shutil.rmtree(old, ignore_errors=True)
    path.rename(old)
    shutil.rmtree(old, ignore_errors=True)


class CheckpointManager:
    """Writes, finds, prunes and loads checkpoints of one run.

    Every method that touches Accelerate (``save``, ``load``) is collective: call it
    on all processes. Only the main process renames, prunes and writes JSON.

    Args:
        accelerator: The run's ``Accelerator`` (models, optimizers and schedulers
            already prepared).
        directory: The checkpoint folder (usually ``<work_dir>/checkpoints``).
        max_keep: Keep at most this many complete checkpoints (None or <= 0: all).
        layout: ``'auto'`` (the direct layout where the run allows it, see the module
            doc) or ``'accelerate'`` (always ``save_state``/``load_state``).

    Example:
        >>> # inside a training script, on every process:
        >>> # manager = CheckpointManager(accelerator, 'work_dirs/x/checkpoints', max_keep=3)
        >>> # manager.save('iter_100', {'iter': 100, 'epoch': 1})
    """

    def __init__(self, accelerator: Any, directory: str | os.PathLike, max_keep: int | None = None,
                 layout: str = "auto") -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout: expected one of {list(LAYOUTS)}, got {layout!r}")
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.max_keep = max_keep if max_keep and max_keep > 0 else None
        self._layout: DirectLayout | None | bool = False if layout == "auto" else None  # False: undecided

    @property
    def direct(self) -> DirectLayout | None:
        """The direct layout's writer, or None where Accelerate's layout is used.

        Decided once, on the first save or load (everything is prepared by then).
        """
        if self._layout is False:
            self._layout = DirectLayout(self.accelerator) if uses_direct_layout(self.accelerator) else None
        return self._layout

    def save(self, name: str, state: dict[str, Any]) -> Path:
        """Write checkpoint ``name`` atomically and point ``latest`` at it.

        Args:
            name: Folder name, e.g. ``'iter_40'``.
            state: JSON-serializable runner state (must contain ``iter``).

        Returns:
            The checkpoint folder.
        """
        acc = self.accelerator
        tmp, final = self.directory / f"{TMP_PREFIX}{name}", self.directory / name
        new_directory = not self.directory.is_dir()
        if acc.is_main_process:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        if self.direct is not None:
            self.direct.save(tmp)
        else:
            acc.save_state(str(tmp))
        acc.wait_for_everyone()
        kill_point("save", int(state["iter"]))
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state, separators=(",", ":"), sort_keys=True))
            pointer = self.directory / f"{TMP_PREFIX}{LATEST_FILE}"
            pointer.write_text(final.name + "\n")
            # Every file written by any rank, every folder, and the staged pointer.
            fsync_all([*tree_paths(tmp), pointer])
            self._publish(tmp, final, pointer, new_directory)
            self.prune()
        acc.wait_for_everyone()
        return final

    def _publish(self, tmp: Path, final: Path, pointer: Path, new_directory: bool) -> None:
        """Rename the synced checkpoint into place, then swap the pointer; one folder fsync."""
        if final.exists():
            _discard(final)
        tmp.rename(final)
        os.replace(pointer, self.directory / LATEST_FILE)
        # Both renames live in this folder: one fsync makes them durable (and, on a
        # first save, the parent's entry for the folder itself).
        fsync_all([self.directory, *([self.directory.parent] if new_directory else [])])

    def prune(self) -> None:
        """Delete the oldest complete checkpoints beyond ``max_keep`` (never ``latest``)."""
        if self.max_keep is None:
            return
        latest = find_latest(self.directory)
        found = [path for _, path in _complete_checkpoints(self.directory)]
        for path in found[:-self.max_keep]:
            if path != latest:
                _discard(path)

    def clean_partial(self) -> None:
        """Remove leftovers of killed saves (``.tmp-*``/``.old-*`` folders); main process only."""
        if not self.accelerator.is_main_process or not self.directory.is_dir():
            return
        for child in self.directory.iterdir():
            if child.name.startswith((TMP_PREFIX, OLD_PREFIX)) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)

    def resolve(self, resume: bool | str | os.PathLike | None) -> Path | None:
        """Turn a ``resume`` setting into a checkpoint folder (see :func:`resolve_resume`)."""
        return resolve_resume(resume, self.directory)

    def load(self, path: str | os.PathLike, fingerprint: dict[str, list[int]] | None = None) -> dict[str, Any]:
        """Load checkpoint ``path`` into the prepared objects; return the runner state.

        Args:
            path: A complete checkpoint folder.
            fingerprint: The current model's ``{parameter name: shape}``; when given,
                a checkpoint of a different model is refused before anything loads.

        Returns:
            The runner state saved with the checkpoint.

        Raises:
            ValueError: The checkpoint belongs to a different model, or is a direct
                checkpoint and this run needs Accelerate's layout (FSDP, ...).
            RuntimeError: Loading failed (the message names the folder).
        """
        state = read_state(path)
        if fingerprint is not None and "model" in state:
            problems = fingerprint_problems(state["model"], fingerprint)
            if problems:
                raise ValueError(f"checkpoint {str(path)!r} was saved from a different model: "
                                 + "; ".join(problems))
        direct = is_direct_checkpoint(path)
        if direct and self.direct is None:
            raise ValueError(
                f"checkpoint {str(path)!r} holds state.pt (the direct layout of single-process and "
                "DDP runs), but this run uses Accelerate's save_state layout (distributed type "
                f"{self.accelerator.distributed_type}) and cannot resume it; start fresh with "
                "load_from=<that folder> to reuse its model weights")
        try:
            if direct:
                self.direct.load(Path(path))
            else:
                self.accelerator.load_state(str(path))
        except (RuntimeError, KeyError, FileNotFoundError, ValueError) as err:
            raise RuntimeError(f"loading checkpoint {str(path)!r} failed: {err}") from err
        return state


def rng_snapshot() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) of this process."""
    import random

    import numpy as np
    import torch

    snap = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    return snap


def restore_rng(snapshot: dict[str, Any] | None) -> None:
    """Set the global RNG states from :func:`rng_snapshot` (no-op for None)."""
    if snapshot is None:
        return
    import random

    import numpy as np
    import torch

    random.setstate(snapshot["python"])
    np.random.set_state(snapshot["numpy"])
    torch.set_rng_state(snapshot["torch"])
    if "cuda" in snapshot:
        torch.cuda.set_rng_state_all(snapshot["cuda"])


def resolve_resume(resume: bool | str | os.PathLike | None, directory: str | os.PathLike) -> Path | None:
    """Turn a ``resume`` setting into a checkpoint folder, or None to start fresh.

    Args:
        resume: ``False``/``None`` (start fresh), ``True``/``'auto'`` (the latest
            complete checkpoint in ``directory``, if any) or a path to a checkpoint
            folder (or to a folder of checkpoints, whose latest is taken).
        directory: The run's checkpoint folder.

    Returns:
        The folder to load, or None.

    Raises:
        FileNotFoundError: An explicit path that is not a complete checkpoint.
    """
    if resume in (None, False, "", "none", "false"):
        return None
    if resume is True or resume in ("auto", "true"):
        return find_latest(directory)
    path = Path(resume)
    if is_complete(path):
        return path
    inner = find_latest(path) if path.is_dir() else None
    if inner is not None:
        return inner
    reason = "does not exist" if not path.exists() else f"contains no {STATE_FILE}"
    raise FileNotFoundError(f"resume={str(resume)!r}: the path {reason}; expected a checkpoint "
                            f"folder such as {str(Path(directory) / 'iter_100')!r}, or 'auto'")


def merge_sharded(checkpoint: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Merge an FSDP ``SHARDED_STATE_DICT`` checkpoint's model shards into one file.

    Args:
        checkpoint: A checkpoint folder holding ``pytorch_model_fsdp_0/``.
        output_dir: Where ``model.safetensors`` is written.

    Returns:
        The merged weights file.

    Raises:
        FileNotFoundError: The checkpoint has no sharded model folder.

    Example:
        >>> # merge_sharded('work_dirs/fsdp/checkpoints/iter_40', 'merged')
    """
    from accelerate.utils import merge_fsdp_weights

    shards = Path(checkpoint) / "pytorch_model_fsdp_0"
    if not shards.is_dir():
        raise FileNotFoundError(f"{str(checkpoint)!r} has no 'pytorch_model_fsdp_0' folder; "
                                "only FSDP SHARDED_STATE_DICT checkpoints need merging")
    merge_fsdp_weights(str(shards), str(output_dir), safe_serialization=True)
    return Path(output_dir) / "model.safetensors"
