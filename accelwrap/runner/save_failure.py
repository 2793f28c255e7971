"""A checkpoint write that fails: detect it, agree on it across processes, say it in one line.

A full disk, a permission error or a file-size limit surfaces as an ``OSError`` (``open``,
``write``, ``fsync``, ``rename``), as torch's zip writer's ``RuntimeError`` ("file write
failed"), as safetensors' ``SafetensorError`` or as DCP's ``CheckpointException``.
:func:`is_write_error` recognises them; :func:`agree` makes every process learn every
process's failure at the end of a save stage (no rank is left waiting in a barrier that a
failed rank never reaches); :func:`failure_message` is the one line the run shows: the
file or folder, the free space of its file system, and the checkpoint that stays.

``default_hooks.checkpoint.on_error`` decides what follows (:data:`POLICIES`): ``raise``
(default) stops the run with a :class:`~accelwrap.errors.CheckpointWriteError`,
``warn`` logs the line and training goes on; the next due save tries again. Under
``warn`` a run whose last save failed (no later save wrote it) does not end as if it
had: :class:`LastSaveFailed` names the newest checkpoint that stays (what ``--resume
auto`` continues from) and the process exits with :data:`LAST_SAVE_FAILED_EXIT_CODE`
(74, ``EX_IOERR``).

Example:
    >>> format_bytes(3 * 1024 ** 2)
    '3.0 MiB'
    >>> is_write_error(OSError(28, 'No space left on device')), is_write_error(KeyError('x'))
    (True, False)
    >>> print(LastSaveFailed('iter_90', 90, None))  # doctest: +NORMALIZE_WHITESPACE
    training reached iter 90, but its last checkpoint 'iter_90' was not saved (see the
    warning above); no checkpoint was saved, so --resume auto would start from scratch
    (exit status 74)
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Any

__all__ = ["LAST_SAVE_FAILED_EXIT_CODE", "POLICIES", "LastSaveFailed", "agree",
           "describe_error", "failure_message", "format_bytes", "free_space", "is_write_error"]

POLICIES = ("raise", "warn")
LAST_SAVE_FAILED_EXIT_CODE = 74  # EX_IOERR; 1 is a user error, 75 a preemption


class LastSaveFailed(SystemExit):
    """Raised at the end of training when the run's last save failed under ``on_error: warn``.

    A ``SystemExit`` whose ``code`` is :data:`LAST_SAVE_FAILED_EXIT_CODE`: a script that
    calls ``runner.train()`` exits with 74 (no traceback) unless it catches this. The run
    trained to its end, but its newest state is not on disk.

    Attributes:
        name: The checkpoint that was not saved (``'iter_90'``).
        iteration: The iteration training reached.
        last_good: The newest checkpoint that stays (``latest``), or None when there is none.
    """

    def __init__(self, name: str, iteration: int, last_good: str | os.PathLike | None) -> None:
        super().__init__(LAST_SAVE_FAILED_EXIT_CODE)
        self.name, self.iteration = name, iteration
        self.last_good = None if last_good is None else str(last_good)

    def __str__(self) -> str:
        stays = ("no checkpoint was saved, so --resume auto would start from scratch"
                 if self.last_good is None else
                 f"the newest checkpoint that stays is {self.last_good}, which --resume auto "
                 f"continues from")
        return (f"training reached iter {self.iteration}, but its last checkpoint "
                f"{self.name!r} was not saved (see the warning above); {stays} (exit status "
                f"{LAST_SAVE_FAILED_EXIT_CODE})")


def is_write_error(err: BaseException) -> bool:
    """Whether ``err`` is how a failed checkpoint write surfaces (not a bug in the caller)."""
    if isinstance(err, (OSError, RuntimeError)):
        return True
    return type(err).__name__ in ("SafetensorError", "CheckpointException")


def format_bytes(count: int) -> str:
    """``count`` bytes as ``'512 B'``, ``'12.0 KiB'``, ``'3.0 MiB'``, ``'1.5 GiB'``."""
    if count < 1024:
        return f"{count} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}"
    return f"{count:.1f} TiB"  # pragma: no cover - the loop always returns


def free_space(path: str | os.PathLike) -> str:
    """Free space of the file system holding ``path`` (or its nearest existing parent).

    Below 64 KiB or 1% of its size, the file system is called full: torch's zip writer
    reports a full disk only as ``unexpected pos ...``, so the line must say it.
    """
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        usage = shutil.disk_usage(path)
    except OSError as err:
        return f"an unknown amount of free space ({err.strerror or err})"
    full = usage.free < max(64 * 1024, usage.total // 100)
    return f"{format_bytes(usage.free)} free{' (full)' if full else ''}"


_RANK_FILE = re.compile(r"random_states_(\d+)\.pkl")
_FIRST_SAFETENSORS = "model.safetensors"


def _where(err: BaseException, folder: Path, rank: int) -> str:
    """The file the error names, else the folder and the newest file this rank wrote."""
    filename = getattr(err, "filename", None)
    if filename:
        path = Path(os.fsdecode(filename))
        try:
            return str(path.relative_to(folder.parent))
        except ValueError:
            return str(path)
    if type(err).__name__ == "SafetensorError" and not (folder / _FIRST_SAFETENSORS).exists():
        # safetensors removes its partial file and names none; the model's file is the first
        # one Accelerate writes with it, so its absence says which write failed.
        return f"{folder.name}/{_FIRST_SAFETENSORS}"
    try:  # torch's and safetensors' writers do not say which file they were writing
        files = [p for p in folder.rglob("*") if p.is_file() and _maybe_mine(p.name, rank)]
        newest = max(files, key=lambda p: p.stat().st_mtime_ns) if files else None
    except OSError:
        newest = None
    if newest is None:
        return f"{folder.name}/"
    return f"{folder.name}/ (last file written: {newest.relative_to(folder).as_posix()})"


def _maybe_mine(name: str, rank: int) -> bool:
    # Every rank writes its own RNG file; the other files of a plain run are the main one's.
    found = _RANK_FILE.fullmatch(name)
    return int(found.group(1)) == rank if found else rank == 0


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        name = errno.errorcode.get(err.errno, str(err.errno))
        return f"{name}: {err.strerror or os.strerror(err.errno)}"
    text = " ".join(str(err).split()) or type(err).__name__
    if "inline_container" in text:  # torch's zip writer hides the OS error
        text += " -- torch's writer could not write the whole file (disk full? file size limit?)"
    return f"{type(err).__name__}: {text[:400]}"


def describe_error(err: BaseException, folder: Path, rank: int, ranks: int) -> str:
    """``'[rank R: ]writing <file> failed (<reason>)'`` for one process's failure."""
    prefix = f"rank {rank}: " if ranks > 1 else ""
    return f"{prefix}writing {_where(err, folder, rank)} failed ({_reason(err)})"


def agree(accelerator: Any, report: str | None) -> list[str]:
    """Every process's failure report of a save stage (collective: call on all processes).

    Args:
        accelerator: The run's ``Accelerator``.
        report: This process's failure (:func:`describe_error`), or None.

    Returns:
        The reports of the processes that failed, by rank (empty: all succeeded).
    """
    if accelerator.num_processes > 1:
        from accelerate.utils import gather_object

        reports = gather_object([report])
    else:
        reports = [report]
    return [r for r in reports if r is not None]


def failure_message(name: str, tmp: Path, reports: list[str], last_good: Path | None,
                    policy: str) -> str:
    """The one line a failed save shows (see the module docstring).

    Args:
        name: The checkpoint's name.
        tmp: Its temporary folder (removed after the failure).
        reports: The failed processes' :func:`describe_error` lines.
        last_good: The checkpoint that stays (None: none).
        policy: ``default_hooks.checkpoint.on_error``.
    """
    directory = tmp.parent
    stays = (f"the last good checkpoint {last_good} stays" if last_good is not None
             else "there is no earlier checkpoint")
    then = ("; training continues (default_hooks.checkpoint.on_error: warn) and the next "
            "save tries again (a run whose last save fails exits with status "
            f"{LAST_SAVE_FAILED_EXIT_CODE})" if policy == "warn" else
            "; set default_hooks.checkpoint.on_error: warn to keep training without it")
    return (f"checkpoint {name!r} was not saved: {'; '.join(reports)}; "
            f"the file system of {directory} has {free_space(directory)}; {stays}; its "
            f"partial folder {tmp} is removed{then}")
