"""Atomic, verified, resumable checkpoints on ``accelerator.save_state`` / ``load_state``.

What one checkpoint folder holds (its parts, files, writers) is declared once, in
:mod:`accelwrap.runner.checkpoint_parts`; this module writes, prunes and loads such
folders (finding them is :mod:`accelwrap.runner.checkpoint_find`). Layout of
``<work_dir>/checkpoints``::

    iter_40/               one complete checkpoint (Accelerate's files + runner_state.json)
    epoch_3/
    best_accuracy_epoch_2/ the best validation so far (save_best): never pruned
    latest                 text file: the name of the newest complete checkpoint
    .tmp-iter_48/          a save in progress (or killed mid-way): never loaded

A save writes everything into ``.tmp-<name>``, then seals and publishes it
(:mod:`accelwrap.runner.publish`): ``runner_state.json`` written last, holding the size
and CRC-32 of every other file (:mod:`accelwrap.runner.manifest`); the folder renamed
into place and ``latest`` rewritten; every file, the folders and the pointer synced in
one concurrent round; only then older checkpoints pruned, before ``save`` returns. A
process killed at any moment leaves the previous checkpoint loadable and ``latest``
pointing at a complete one; a power loss inside that round can leave the new folder
incomplete or damaged, which loading detects (``resume='auto'`` then takes the previous
one, not yet pruned), and a sync that fails takes the new folder back out. A write that
fails (disk full, permissions) removes the temporary folder and, on every process at
once, raises one clear :class:`~accelwrap.errors.CheckpointWriteError` or, with
``on_error='warn'``, logs it and lets training go on (:mod:`accelwrap.runner.save_failure`).
A load verifies every file against the manifest: sizes and small files before Accelerate
reads any of them, the large files' contents while it does
(:mod:`accelwrap.runner.checkpoint_load`).

What loads how: the weights are safetensors; ``optimizer*.bin``, ``scheduler*.bin`` and
``scaler.pt`` load with a plain ``torch.load(path, weights_only=True)``;
``random_states_<rank>.pkl`` holds NumPy's RNG state as an ``ndarray``, which
``weights_only=True`` accepts only with NumPy's array globals allowed, as Accelerate's
``load_state`` does (``torch.serialization.safe_globals(accelerate.utils.other.
TORCH_SAFE_GLOBALS)``); the runner's own state is JSON. Nothing is loaded with
``weights_only=False`` (no object is registered with ``register_for_checkpointing``,
whose loader forces it).

Example:
    >>> from accelwrap.runner.checkpoint import find_latest
    >>> find_latest('/nonexistent/checkpoints') is None
    True
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError, CheckpointWriteError
from accelwrap.runner.async_save import AsyncWriter, async_refusal, save_in_background
from accelwrap.runner.best import BEST_PREFIX
from accelwrap.runner.checkpoint_find import (
    LATEST_FILE,
    OLD_PREFIX,
    TMP_PREFIX,
    checkpoints_by_iter,
    find_latest,
    is_complete,
    read_state,
    resolve_resume,
    resolve_resume_verified,
    wants_resume,
)
from accelwrap.runner.checkpoint_layout import Layout
from accelwrap.runner.checkpoint_load import load_verified, refuse_mismatch
from accelwrap.runner.checkpoint_parts import (
    STATE_FILE,
    missing_files,
    missing_message,
    save_own_files,
)
from accelwrap.runner.fault_points import kill_point
from accelwrap.runner.manifest import without_zip_crc
from accelwrap.runner.publish import discard, publish, seal
from accelwrap.runner.save_failure import (
    POLICIES,
    agree,
    describe_error,
    failure_message,
    is_write_error,
)

# Re-exported: accelwrap.tools.merge_shards and the benchmarks import them from here.
from accelwrap.runner.weights import fingerprint_problems

__all__ = ["LATEST_FILE", "OLD_PREFIX", "STATE_FILE", "TMP_PREFIX", "CheckpointManager",
           "find_latest", "fingerprint_problems", "is_complete", "read_state", "resolve_resume",
           "wants_resume"]

logger = logging.getLogger("accelwrap")


class _SaveFailed(Exception):
    """Internal: a save stage failed on some process (``reports`` says where)."""

    def __init__(self, reports: list[str]) -> None:
        super().__init__("; ".join(reports))
        self.reports = reports


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
        on_error: A save whose writing fails: ``'raise'`` a ``CheckpointWriteError`` or
            ``'warn'`` and go on. A ``loop`` given to :meth:`save` overrides it with its
            runner's ``default_hooks.checkpoint.on_error``.

    Example:
        >>> # inside a training script, on every process:
        >>> # manager = CheckpointManager(accelerator, 'work_dirs/x/checkpoints', max_keep=3)
        >>> # manager.save('iter_100', {'iter': 100, 'epoch': 1})
    """

    def __init__(self, accelerator: Any, directory: str | os.PathLike,
                 max_keep: int | None = None, layout: Layout | None = None,
                 on_error: str = "raise") -> None:
        if on_error not in POLICIES:
            raise ValueError(f"on_error: expected one of {list(POLICIES)}, got {on_error!r}")
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.max_keep = max_keep if max_keep and max_keep > 0 else None
        self.layout = layout
        self.on_error = on_error
        self._reported: set[Path] = set()
        self._verified: Path | None = None  # the folder resolve() read every file of
        self._writer = AsyncWriter()  # default_hooks.checkpoint.async (async_save.py)
        self._refused_async = False

    def save(self, name: str, state: dict[str, Any], loop: Any = None,
             replaces: str | None = None) -> Path | None:
        """Write checkpoint ``name`` atomically and point ``latest`` at it.

        Args:
            name: Folder name, e.g. ``'iter_40'``.
            state: JSON-serializable runner state (must contain ``iter``).
            loop: The training loop, for parts accelwrap writes into files of their own.
            replaces: For a best checkpoint (``best_*``: ``latest`` is left alone and
                ``max_keep`` never prunes it), the previous best folder, deleted once the
                new one is in place.

        Returns:
            The checkpoint folder; None when writing failed under ``on_error='warn'``.

        With ``default_hooks.checkpoint.async: true`` (the ``loop``'s runner), only the
        snapshot into host memory happens here; the rest runs in the background
        (:mod:`accelwrap.runner.async_save`) and its failure is raised or logged by the
        next ``save``, ``load`` or :meth:`wait`.

        Raises:
            CheckpointWriteError: Writing failed on some process (every process raises
                it; the temporary folder is removed; the previous checkpoint stays).
            CheckpointError: A declared file was not written (nothing is published).
        """
        self.wait()  # a background save before this one ends (and reports) first
        tmp, final = self.directory / f"{TMP_PREFIX}{name}", self.directory / name
        cfg = getattr(getattr(loop, "runner", None), "checkpoint_cfg", None)
        policy = getattr(cfg, "on_error", self.on_error)
        try:
            if getattr(cfg, "async_save", False) and self._async_allowed():
                self._write_async(tmp, final, state, loop, replaces, policy)
            else:
                self._write(tmp, final, state, loop, replaces)
        except _SaveFailed as failed:
            return self._failed(name, tmp, failed, policy)
        except BaseException:
            self._remove_partial(tmp)
            raise
        return final

    def wait(self) -> None:
        """Wait for a background (``async``) save to be published; raise or log its
        failure as :meth:`save` does for a synchronous one. No-op when none runs."""
        self._writer.wait()

    def _failed(self, name: str, tmp: Path, failed: _SaveFailed, policy: str) -> None:
        message = failure_message(name, tmp, failed.reports, find_latest(self.directory),
                                  policy)
        self._remove_partial(tmp)
        if policy == "raise":
            raise CheckpointWriteError(message) from None
        if self.accelerator.is_main_process:
            logger.warning("%s", message)

    def _async_allowed(self) -> bool:
        refusal = async_refusal(self.accelerator)
        if refusal is not None and not self._refused_async:
            self._refused_async = True
            if self.accelerator.is_main_process:
                logger.warning("%s", refusal)
        return refusal is None

    def _write_async(self, tmp: Path, final: Path, state: dict[str, Any], loop: Any,
                     replaces: str | None, policy: str) -> None:
        """Snapshot here; write, agree and publish in the background (async_save.py)."""
        save_in_background(self, tmp, final, state, loop, replaces, policy)

    def _stage(self, work: Callable[[], Any], tmp: Path) -> None:
        """Run one save stage on this process; raise ``_SaveFailed`` on all if any failed."""
        acc, report = self.accelerator, None
        try:
            work()
        except BaseException as err:
            if not is_write_error(err):
                raise
            report = describe_error(err, tmp, acc.process_index, acc.num_processes)
        reports = agree(acc, report)  # also the barrier between stages
        if reports:
            raise _SaveFailed(reports)

    def _write(self, tmp: Path, final: Path, state: dict[str, Any], loop: Any,
               replaces: str | None) -> None:
        acc = self.accelerator
        new_directory = not self.directory.is_dir()

        def write_files() -> None:
            with without_zip_crc():  # the manifest sums each file once
                acc.save_state(str(tmp))
            save_own_files(loop, tmp)

        self._stage(lambda: self._make_folder(tmp), tmp)
        self._stage(write_files, tmp)
        self._finish(tmp, final, state, replaces, new_directory)

    def _make_folder(self, tmp: Path) -> None:
        """Main process: an empty temporary folder (a killed save's leftover removed)."""
        if not self.accelerator.is_main_process:
            return
        try:
            tmp.mkdir()
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        except FileNotFoundError:  # the first save: the checkpoints folder is new
            tmp.mkdir(parents=True)

    def _check_written(self, tmp: Path, final: Path) -> None:
        """Raise ``CheckpointError`` when a declared file was not written (nothing is
        published then)."""
        if self.layout is not None:
            missing = missing_files(tmp, self.layout, skip=(STATE_FILE,))
            if missing:
                raise CheckpointError(f"saving checkpoint {str(final)!r} wrote no "
                                      + missing_message(missing, self.layout))

    def _pointer(self, final: Path) -> Path | None:
        """The ``latest`` a save moves; None for a best checkpoint (``latest`` stays)."""
        return None if final.name.startswith(BEST_PREFIX) else self.directory / LATEST_FILE

    def _finish(self, tmp: Path, final: Path, state: dict[str, Any], replaces: str | None,
                new_directory: bool) -> None:
        """Check the written files, seal (manifest, state file) and publish the folder."""
        main = self.accelerator.is_main_process
        self._check_written(tmp, final)  # every rank (all raise together) before the rename
        kill_point("save", int(state["iter"]))
        sealed: list[Any] = []  # main: the fsyncs seal() started, for _publish to wait for
        self._stage(lambda: main and sealed.extend(seal(tmp, final, state)), tmp)
        # A barrier: every rank checked the temporary folder before it is renamed.
        self._stage(lambda: main and self._publish(tmp, final, replaces, new_directory,
                                                   *sealed), tmp)

    def _publish(self, tmp: Path, final: Path, replaces: str | None, new_directory: bool,
                 synced: Callable[[], None], unsynced: list[str]) -> None:
        """Main process: publish the sealed folder (:mod:`accelwrap.runner.publish`; the
        last two arguments are what ``seal`` returned); only then discard what it
        replaces and prune."""
        publish(tmp, final, self._pointer(final), new_directory, synced, unsynced)
        if replaces and replaces != final.name and is_complete(self.directory / replaces):
            discard(self.directory / replaces)
        self.prune()

    def _remove_partial(self, tmp: Path) -> None:
        if self.accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)

    def prune(self) -> None:
        """Delete the oldest complete checkpoints beyond ``max_keep`` (never ``latest``,
        never a ``best_*`` one). One whose ``runner_state.json`` cannot be read is left
        in place and reported once."""
        if self.max_keep is None:
            return
        latest = find_latest(self.directory)
        found, unreadable = checkpoints_by_iter(self.directory)
        for path, problem in unreadable:
            if path not in self._reported:
                self._reported.add(path)
                logger.warning("checkpoint %s is damaged (%s): not counted for "
                               "max_keep_ckpts and left in place", path, problem)
        kept = [path for _, path in found if not path.name.startswith(BEST_PREFIX)]
        for path in kept[:-self.max_keep]:
            if path != latest:
                discard(path)

    def clean_partial(self) -> None:
        """Remove leftovers of killed saves (``.tmp-*``/``.old-*`` folders, a staged
        ``.tmp-latest``); main process only."""
        if not self.accelerator.is_main_process or not self.directory.is_dir():
            return
        for child in self.directory.iterdir():
            if not child.name.startswith((TMP_PREFIX, OLD_PREFIX)):
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)

    def resolve(self, resume: bool | str | os.PathLike | None) -> Path | None:
        """Turn a ``resume`` setting into a checkpoint folder (see :func:`resolve_resume`).

        A folder ``'auto'`` picked had every file read to pick it: :meth:`load` does not
        read them again."""
        path, verified = resolve_resume_verified(resume, self.directory)
        self._verified = path if verified else None
        return path

    def load(self, path: str | os.PathLike, fingerprint: dict[str, list[int]] | None = None,
             loop: Any = None) -> dict[str, Any]:
        """Verify checkpoint ``path``, load it into the prepared objects, return the state.

        Args:
            path: A complete checkpoint folder.
            fingerprint: The current model's ``{parameter name: shape}``; when given,
                a checkpoint of a different model is refused before anything loads.
            loop: The training loop, for parts accelwrap writes into files of their own.

        Returns:
            The runner state saved with the checkpoint.

        Raises:
            ValueError: The checkpoint belongs to a different model.
            DamagedCheckpointError: A file fails its manifest check (missing, truncated,
                changed), or ``runner_state.json`` is unreadable; when a large file's
                content is at fault, after Accelerate's ``load_state`` (see
                :func:`~accelwrap.runner.checkpoint_load.load_verified`).
            CheckpointError: A declared file is missing, or Accelerate could not load the
                checkpoint (the message names the folder, the file and its part).
        """
        state = read_state(path)
        refuse_mismatch(path, state, self.layout, fingerprint)
        self.wait()
        load_verified(self.accelerator, path, state, loop,
                      verified=self._verified is not None and Path(path) == self._verified)
        return state
