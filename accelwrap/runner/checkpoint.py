"""Atomic, resumable checkpoints on ``accelerator.save_state`` / ``load_state``.

What one checkpoint folder holds (its parts, files, writers) is declared once, in
:mod:`accelwrap.runner.checkpoint_parts`; this module writes, finds, prunes and loads
such folders. Layout of ``<work_dir>/checkpoints``::

    iter_40/               one complete checkpoint (Accelerate's files + runner_state.json)
    epoch_3/
    best_accuracy_epoch_2/ the best validation so far (save_best): never pruned
    latest                 text file: the name of the newest complete checkpoint
    .tmp-iter_48/          a save in progress (or killed mid-way): never loaded

A save writes everything into ``.tmp-<name>`` (``runner_state.json`` last) and the
new pointer into ``.tmp-latest``, fsyncs all of it (every file and folder, concurrently:
see :mod:`accelwrap.runner.durable`), only then renames the folder into place and
swaps the pointer, and fsyncs the checkpoint folder so that both renames are durable
before ``save`` returns. A process killed at any moment leaves the previous checkpoint
loadable and ``latest`` pointing at a complete one. The runner's own state is JSON, and
Accelerate loads the rest with ``weights_only=True`` (no pickled objects are registered
with ``register_for_checkpointing``, whose loader forces ``weights_only=False``).

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
from dataclasses import replace
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError
from accelwrap.runner.best import BEST_PREFIX
from accelwrap.runner.checkpoint_layout import Layout
from accelwrap.runner.checkpoint_parts import (
    FINGERPRINT_KEY,
    STATE_FILE,
    load_own_files,
    missing_files,
    missing_message,
    save_own_files,
)
from accelwrap.runner.durable import fsync_all, tree_paths

# Re-exported: accelwrap.tools.merge_shards and the benchmarks import them from here.
from accelwrap.runner.weights import fingerprint_problems

LATEST_FILE = "latest"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
KILL_ENV = "ACCELWRAP_TEST_KILL"

__all__ = ["STATE_FILE", "CheckpointManager", "find_latest", "is_complete", "kill_point",
           "read_state", "resolve_resume", "restore_rng", "rng_snapshot"]


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
    os.rename(path, old)
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
        layout: The run's :class:`~accelwrap.runner.checkpoint_layout.Layout`; when set
            (the ``Runner`` sets it once everything is prepared), a save that did not
            write every declared file is never published, and a checkpoint lacking one
            is refused before anything loads.

    Example:
        >>> # inside a training script, on every process:
        >>> # manager = CheckpointManager(accelerator, 'work_dirs/x/checkpoints', max_keep=3)
        >>> # manager.save('iter_100', {'iter': 100, 'epoch': 1})
    """

    def __init__(self, accelerator: Any, directory: str | os.PathLike,
                 max_keep: int | None = None, layout: Layout | None = None) -> None:
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.max_keep = max_keep if max_keep and max_keep > 0 else None
        self.layout = layout

    def save(self, name: str, state: dict[str, Any], loop: Any = None,
             replaces: str | None = None) -> Path:
        """Write checkpoint ``name`` atomically and point ``latest`` at it.

        Args:
            name: Folder name, e.g. ``'iter_40'``.
            state: JSON-serializable runner state (must contain ``iter``).
            loop: The training loop, for parts accelwrap writes into files of their own.
            replaces: For a best checkpoint (``best_*``: ``latest`` is left alone and
                ``max_keep`` never prunes it), the previous best folder, deleted once the
                new one is in place.

        Returns:
            The checkpoint folder.

        Raises:
            CheckpointError: A declared file was not written (nothing is published).
        """
        acc = self.accelerator
        tmp, final = self.directory / f"{TMP_PREFIX}{name}", self.directory / name
        new_directory = not self.directory.is_dir()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        save_own_files(loop, tmp)
        acc.wait_for_everyone()
        if self.layout is not None:
            # Every rank looks (so that all raise together), before the main one renames.
            missing = missing_files(tmp, self.layout, skip=(STATE_FILE,))
            acc.wait_for_everyone()
            if missing:
                raise CheckpointError(f"saving checkpoint {str(final)!r} wrote no "
                                      + missing_message(missing, self.layout))
        kill_point("save", int(state["iter"]))
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
            best = name.startswith(BEST_PREFIX)
            pointer = None if best else self.directory / f"{TMP_PREFIX}{LATEST_FILE}"
            if pointer is not None:
                pointer.write_text(final.name + "\n")
            # Every file written by any rank, every folder, and the staged pointer.
            fsync_all([*tree_paths(tmp), *([pointer] if pointer else [])])
            self._publish(tmp, final, pointer, new_directory)
            if replaces and replaces != name and is_complete(self.directory / replaces):
                _discard(self.directory / replaces)
            self.prune()
        acc.wait_for_everyone()
        return final

    def _publish(self, tmp: Path, final: Path, pointer: Path | None,
                 new_directory: bool) -> None:
        """Rename the synced checkpoint into place, then swap the pointer; one folder fsync."""
        if final.exists():
            _discard(final)
        # os.rename/os.replace, not Path methods: test_durable.py records these calls (on
        # Python 3.10, Path.rename holds its own reference to the function).
        os.rename(tmp, final)
        if pointer is not None:
            os.replace(pointer, self.directory / LATEST_FILE)
        # Both renames live in this folder: one fsync makes them durable (and, on a
        # first save, the parent's entry for the folder itself).
        fsync_all([self.directory, *([self.directory.parent] if new_directory else [])])

    def prune(self) -> None:
        """Delete the oldest complete checkpoints beyond ``max_keep`` (never ``latest``,
        never a ``best_*`` one)."""
        if self.max_keep is None:
            return
        latest = find_latest(self.directory)
        found = [path for _, path in _complete_checkpoints(self.directory)
                 if not path.name.startswith(BEST_PREFIX)]
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

    def load(self, path: str | os.PathLike, fingerprint: dict[str, list[int]] | None = None,
             loop: Any = None) -> dict[str, Any]:
        """Load checkpoint ``path`` into the prepared objects; return the runner state.

        Args:
            path: A complete checkpoint folder.
            fingerprint: The current model's ``{parameter name: shape}``; when given,
                a checkpoint of a different model is refused before anything loads.
            loop: The training loop, for parts accelwrap writes into files of their own.

        Returns:
            The runner state saved with the checkpoint.

        Raises:
            ValueError: The checkpoint belongs to a different model.
            CheckpointError: A declared file is missing, or Accelerate could not load the
                checkpoint (the message names the folder, the file and its part).
        """
        state = read_state(path)
        if fingerprint is not None and FINGERPRINT_KEY in state:
            problems = fingerprint_problems(state[FINGERPRINT_KEY], fingerprint)
            if problems:
                raise ValueError(f"checkpoint {str(path)!r} was saved from a different model: "
                                 + "; ".join(problems))
        if self.layout is not None:
            # Ranks the saving run did not have start from their seeded RNG (as in Accelerate).
            saved_ranks = int(state.get("world_size", self.layout.world_size))
            layout = replace(self.layout, world_size=min(saved_ranks, self.layout.world_size))
            missing = missing_files(path, layout)
            if missing:
                raise CheckpointError(f"cannot resume from checkpoint {str(path)!r}: it lacks "
                                      + missing_message(missing, layout))
        try:
            self.accelerator.load_state(str(path))
        except (RuntimeError, KeyError, FileNotFoundError, ValueError) as err:
            raise CheckpointError(f"loading checkpoint {str(path)!r} failed: {err}") from err
        load_own_files(loop, Path(path))
        return state


def rng_snapshot() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) of this process."""
    import random

    import numpy as np
    import torch

    snap = {"python": random.getstate(), "numpy": np.random.get_state(),
            "torch": torch.get_rng_state()}
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


def resolve_resume(resume: bool | str | os.PathLike | None,
                   directory: str | os.PathLike) -> Path | None:
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

    Example:
        >>> resolve_resume(False, 'work_dirs/x/checkpoints') is None
        True
        >>> resolve_resume('auto', '/nonexistent/checkpoints') is None  # nothing saved yet
        True
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
