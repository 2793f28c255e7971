"""One run per work dir: a lock file held by the main process, and no silent overwrite.

While a run trains, ``<work_dir>/accelwrap.lock`` (JSON: host, pid, the process's
start time, when the run started, its command line) is held by the run's main
process. It is created atomically (``O_CREAT | O_EXCL``), so of two runs started in one
work dir exactly one gets it; the other stops with a :class:`WorkDirError` naming the
holder. A lock left by a process that no longer runs on this host (killed with
SIGKILL, a crashed node that came back) is *stale*: the next run takes it over and
logs a warning (so is a lock that is still unreadable 10 s after it was created: a run
killed between creating and writing it). A lock of another host cannot be checked from
here: the message says which file to delete once that run is known to be gone. The lock
is released when the run ends, fails or is preempted. With several processes, every one
then looks for that lock in its own work dir (:func:`unshared_work_dir`): a machine whose
work dir is node-local does not see it, and every process stops before training with an
error naming the hosts.

A fresh run (no ``resume``) into a work dir that already holds checkpoints is refused
(resume them with ``--resume auto``, or pick another ``--work-dir``); ``overwrite``
starts over on purpose: the old ``checkpoints/`` folder is deleted (renamed first,
so a kill mid-delete never leaves a half-deleted checkpoint that looks complete).
The old run folders and their logs stay.

Example:
    >>> import tempfile
    >>> work = Path(tempfile.mkdtemp())
    >>> lock = WorkDirLock(work)
    >>> lock.acquire()
    >>> lock_holder(work / LOCK_FILE)['pid'] == os.getpid()
    True
    >>> WorkDirLock(work).acquire()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    accelwrap.runner.workdir.WorkDirError: work dir ... is in use by another run: ...
    >>> lock.release(); (work / LOCK_FILE).exists()
    False
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from accelwrap.runner.checkpoint import find_latest
from accelwrap.runner.checkpoint_find import wants_resume

__all__ = ["LOCK_FILE", "WorkDirError", "WorkDirLock", "checkpoint_conflict", "claim_work_dir",
           "clear_checkpoints", "lock_holder", "parse_overwrite", "unshared_work_dir"]

logger = logging.getLogger("accelwrap")

LOCK_FILE = "accelwrap.lock"
_UNREADABLE_STALE_S = 10.0  # a lock is written within microseconds of its creation
# How long a process looks for the main process's lock before calling its work dir
# unshared: an NFS client may cache "no such folder" for up to acdirmax (60 s by default).
SHARED_WAIT_S = 60.0
SHARED_WAIT_ENV = "ACCELWRAP_SHARED_WAIT_S"  # seconds instead (the tests' refusals are fast)


class WorkDirError(RuntimeError):
    """The work dir cannot be used by this run (locked by another, or holds checkpoints)."""


def _start_ticks(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # The command name (field 2) may hold spaces: fields after its ')' are fixed.
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    """Whether process ``pid`` (started at ``ticks``, if known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    now = _start_ticks(pid)
    return ticks is None or now is None or now == ticks  # another start: the pid was reused


def lock_holder(path: str | os.PathLike) -> dict[str, Any] | None:
    """The content of a lock file (None if there is none; ``{}`` if it is unreadable).

    Example:
        >>> lock_holder('/nonexistent/accelwrap.lock') is None
        True
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "an unreadable lock (being written, or damaged)"
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')!r}, started "
            f"{holder.get('started', '?')} ({holder.get('command', '?')})")


class WorkDirLock:
    """The lock file of one work dir (see the module docstring).

    Args:
        work_dir: The work dir (created if missing when the lock is taken).

    Attributes:
        path: ``<work_dir>/accelwrap.lock``.
    """

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.path = Path(work_dir) / LOCK_FILE
        self._content: str | None = None
        self._made_dir = False

    def acquire(self) -> None:
        """Create the lock, or take over a stale one.

        Raises:
            WorkDirError: Another live run holds it (the message names it).
        """
        self._made_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        content = json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "pid_start_ticks": _start_ticks(os.getpid()),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv) or "python"}) + "\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            self._content = content
            return
        raise WorkDirError(f"work dir {str(self.path.parent)!r}: could not create {self.path} "
                           "(other runs keep taking it over); start one run at a time")

    def _take_over_if_stale(self) -> None:
        holder = lock_holder(self.path)
        if holder is None:  # released meanwhile: try again
            return
        host, pid = holder.get("host"), holder.get("pid")
        stale = (host == socket.gethostname() and isinstance(pid, int)
                 and not _alive(pid, holder.get("pid_start_ticks")))
        if not holder:  # unreadable: a run killed between creating and writing it, if old
            try:
                stale = time.time() - self.path.stat().st_mtime > _UNREADABLE_STALE_S
            except FileNotFoundError:
                return
        if not stale:
            where = ("" if host in (None, socket.gethostname()) else
                     f"; it cannot be checked from host {socket.gethostname()!r}: once that "
                     f"run is known to be gone, delete {str(self.path)!r}")
            raise WorkDirError(f"work dir {str(self.path.parent)!r} is in use by another run: "
                               f"{_describe(holder)}{where}. Wait for it to end, or use "
                               "another --work-dir")
        # Move the stale lock aside and check that it is the one we judged: two runs
        # taking over at once must not remove each other's fresh lock.
        grave = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return
        if lock_holder(grave) != holder:
            os.rename(grave, self.path)
            return
        grave.unlink()
        logger.warning("work dir %s: taking over the stale lock of a run that is gone (%s)",
                       self.path.parent, _describe(holder))

    def release(self) -> None:
        """Delete the lock if this object holds it (no-op otherwise); and the work dir if
        taking the lock created it and nothing else was written there."""
        if self._content is None:
            return
        try:
            if self.path.read_text(encoding="utf-8") == self._content:
                self.path.unlink()
            if self._made_dir and not any(self.path.parent.iterdir()):
                self.path.parent.rmdir()
        except OSError:
            pass
        self._content = None


def parse_overwrite(overwrite: Any, resume: Any) -> bool:
    """Check the ``overwrite`` setting (a bool, and not together with ``resume``).

    Raises:
        ValueError: Not a bool, or ``overwrite`` with a ``resume`` setting.
    """
    if not isinstance(overwrite, bool):
        raise ValueError(f"overwrite: expected true or false, got {overwrite!r}")
    if overwrite and wants_resume(resume):
        raise ValueError(f"overwrite: true deletes the work dir's checkpoints, but resume is "
                         f"{resume!r}; use one of them (--overwrite or --resume)")
    return overwrite


def checkpoint_conflict(checkpoint_dir: str | os.PathLike, fresh: bool,
                        overwrite: bool) -> str | None:
    """Why a run may not start with the checkpoints in ``checkpoint_dir`` (None: it may).

    Args:
        checkpoint_dir: The run's checkpoint folder.
        fresh: The run starts from scratch (no ``resume`` asked for).
        overwrite: Starting over on purpose was asked for.

    Returns:
        The refusal message, or None.

    Example:
        >>> checkpoint_conflict('/nonexistent/checkpoints', fresh=True, overwrite=False) is None
        True
    """
    latest = find_latest(checkpoint_dir)
    if latest is None or not fresh or overwrite:
        return None
    work_dir = Path(checkpoint_dir).parent
    return (f"work dir {str(work_dir)!r} already holds checkpoints (latest: {latest.name}); a "
            f"fresh run would overwrite them. Continue that run with --resume auto, start in "
            f"a new --work-dir, or pass --overwrite (config key overwrite: true) to delete "
            f"them and start over")


def clear_checkpoints(checkpoint_dir: str | os.PathLike) -> None:
    """Delete a checkpoint folder for ``overwrite`` (renamed first, then removed)."""
    path = Path(checkpoint_dir)
    if not path.exists():
        return
    doomed = path.with_name(f".old-{path.name}-{os.getpid()}")
    os.rename(path, doomed)
    logger.warning("overwrite: deleted the checkpoints in %s; starting over", path)
    shutil.rmtree(doomed, ignore_errors=True)


def claim_work_dir(accelerator: Any, work_dir: str | os.PathLike, checkpoint_dir: str | os.PathLike,
                   fresh: bool, overwrite: bool) -> WorkDirLock | None:
    """Lock the work dir on the main process and check its checkpoints; collective.

    The main process decides and tells the others, so every process raises the same
    error; then every process checks that it sees the main process's lock in its work dir
    (:func:`unshared_work_dir`), and all raise if one does not.

    Args:
        accelerator: The run's Accelerator.
        work_dir: The work dir.
        checkpoint_dir: The run's checkpoint folder in it.
        fresh: The run starts from scratch (no ``resume``).
        overwrite: Delete existing checkpoints and start over.

    Returns:
        The lock (main process; release it at the end), else None.

    Raises:
        WorkDirError: Another run holds the lock, a fresh run would overwrite checkpoints,
            or a process does not see the work dir the main process locked.
    """
    lock, problem = None, None
    if accelerator.is_main_process:
        lock = WorkDirLock(work_dir)
        try:
            lock.acquire()
            problem = checkpoint_conflict(checkpoint_dir, fresh, overwrite)
            if problem is None and overwrite:
                clear_checkpoints(checkpoint_dir)
        except WorkDirError as err:
            problem = str(err)
        except OSError as err:
            problem = f"work dir {str(work_dir)!r}: cannot take its lock: {err}"
        if problem is not None:
            lock.release()
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        token = lock._content if lock is not None else None
        problem, token = broadcast_object_list([problem, token], from_process=0)
        if problem is None:
            problem = unshared_work_dir(accelerator, work_dir, json.loads(token))
            if problem is not None and lock is not None:
                lock.release()
    if problem is not None:
        raise WorkDirError(problem)
    return lock


def _shared_wait_s() -> float:
    try:
        return max(0.0, float(os.environ.get(SHARED_WAIT_ENV, SHARED_WAIT_S)))
    except ValueError:
        return SHARED_WAIT_S


def _sees(path: Path, holder: dict[str, Any], wait_s: float) -> bool:
    """Whether ``path`` holds the lock ``holder`` (looked for up to ``wait_s`` seconds)."""
    deadline = time.monotonic() + wait_s
    while True:
        for folder in (path.parent.parent, path.parent):
            try:
                os.listdir(folder)  # an NFS client re-reads the folders (no stale "missing")
            except OSError:
                pass
        if lock_holder(path) == holder:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def unshared_work_dir(accelerator: Any, work_dir: str | os.PathLike,
                      holder: dict[str, Any]) -> str | None:
    """Why the processes do not share one work dir (None: they do); collective.

    Every process looks for the main process's lock (``holder``, its content) in its own
    ``work_dir``, then all learn who saw it (one ``gather_object``). A machine with a
    node-local work dir does not see it: every process writes its own files of each
    checkpoint, so a run on such folders could never save (see README, "Several
    machines"). A process that does not see it at once looks again for
    :data:`SHARED_WAIT_S` seconds (``$ACCELWRAP_SHARED_WAIT_S`` if set), as a network file
    system may show a new folder late; one that sees it does not wait.

    Args:
        accelerator: The run's Accelerator (more than one process).
        work_dir: This process's work dir.
        holder: The content of the main process's lock file.

    Returns:
        The refusal naming the main process's host and work dir and every host (with its
        ranks and work dir) that does not see the lock, or None.

    Example:
        >>> # on every process, after the main one took the lock (claim_work_dir does this):
        >>> # problem = unshared_work_dir(accelerator, work_dir, lock_holder(lock.path))
    """
    from accelerate.utils import gather_object

    work_dir, wait_s = Path(work_dir).absolute(), _shared_wait_s()
    seen = _sees(work_dir / LOCK_FILE, holder, wait_s)
    reports = gather_object([(accelerator.process_index, socket.gethostname(), str(work_dir),
                              seen)])
    blind: dict[tuple[str, str], list[int]] = {}
    for rank, host, folder, ok in reports:
        if not ok:
            blind.setdefault((host, folder), []).append(rank)
    if not blind:
        return None
    main_dir = next(folder for rank, _, folder, _ in reports if rank == 0)
    where = "; ".join(f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))} on "
                      f"host {host!r} (work dir {folder!r})" for (host, folder), ranks
                      in sorted(blind.items()))
    return (f"the work dir is not one folder shared by every machine: the main process "
            f"(rank 0 on host {holder.get('host', '?')!r}) holds its lock "
            f"{str(Path(main_dir) / LOCK_FILE)!r}, which {where} cannot see after "
            f"{wait_s:g} s. Every process writes its own files of each checkpoint "
            "into the work dir, so node-local work dirs cannot work: give every machine the "
            "same --work-dir on a file system they all mount (NFS, Lustre, ...)")
