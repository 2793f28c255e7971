"""Making written files durable: fsync many files and folders at once.

``fsync`` blocks on the disk but releases the GIL, and a journaling file system
(ext4, XFS) commits concurrent fsyncs together. Syncing the files of a checkpoint
one after another pays one disk round trip (journal commit + cache flush) per file;
:func:`fsync_all` issues them from a small thread pool and returns once every one has
finished, which usually costs about one round trip for the lot. Each path still gets
its own ``fsync``, so the guarantee per file is unchanged. :func:`start_fsync` starts
such a round and lets the caller go on (a save renames its folder meanwhile);
:func:`start_all` is the same pool for any I/O of a checkpoint (the manifest's
checksums run there too, alongside the fsyncs).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from accelwrap.runner.durable import fsync_all, tree_paths
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / 'a.bin').write_bytes(b'x')
    >>> fsync_all(tree_paths(root))   # a.bin and the folder itself
    >>> import shutil; shutil.rmtree(root)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

__all__ = ["fsync_all", "start_all", "start_fsync", "tree_paths"]

T = TypeVar("T")

MAX_WORKERS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_fork_hook_installed = False


def fsync_all(paths: Iterable[str | os.PathLike]) -> None:
    """``fsync`` every path (files and folders) concurrently; return when all are durable.

    Args:
        paths: Files and folders to sync. Each one is synced exactly once.

    Raises:
        OSError: The first failure, raised after every other fsync has finished.
    """
    start_fsync(paths)()


def start_fsync(paths: Iterable[str | os.PathLike]) -> Callable[[], None]:
    """Open every path now and start its ``fsync`` on the I/O pool; return the wait.

    The paths are opened before this returns, so a folder renamed meanwhile (a save
    publishing its checkpoint) is still synced: each ``fsync`` works on its open file.

    Args:
        paths: Files and folders to sync, each exactly once.

    Returns:
        A function that waits for every ``fsync``, closes the files and raises the first
        failure (of an ``fsync``, else of an ``open``) after all have finished.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> done = start_fsync([folder])
        >>> done()
    """
    fds: list[int] = []
    failures: list[OSError] = []
    for path in paths:
        try:
            fds.append(os.open(path, os.O_RDONLY))
        except OSError as err:
            failures.append(err)
    # One file is synced in the waiting thread (a hand-off to the pool costs more).
    synced = start_all(partial(os.fsync, fd) for fd in fds) if len(fds) > 1 else None

    def wait() -> None:
        try:
            if synced is not None:
                synced()
            else:
                for fd in fds:
                    os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)
        if failures:
            raise failures[0]

    return wait


def start_all(tasks: Iterable[Callable[[], T]]) -> Callable[[], list[T]]:
    """Start ``tasks`` on the I/O pool now; return a function that waits for them.

    The caller goes on meanwhile (a load checks file contents while Accelerate reads).

    Returns:
        A function returning the results in order; it raises the first task's failure,
        after every other task has finished.

    Example:
        >>> results = start_all([lambda: 1, lambda: 2])
        >>> results()
        [1, 2]
    """
    futures = [_executor().submit(task) for task in tasks]

    def results() -> list[T]:
        errors = [future.exception() for future in futures]  # waits for all of them
        first = next((error for error in errors if error is not None), None)
        if first is not None:
            raise first
        return [future.result() for future in futures]

    return results


def tree_paths(root: str | os.PathLike) -> list[Path]:
    """Every file and folder under ``root``, ``root`` included (symlinks are not followed)."""
    root = Path(root)
    found = [root]
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        found.extend(base / name for name in dirs)
        found.extend(base / name for name in files)
    return found


def _executor() -> ThreadPoolExecutor:
    global _pool, _fork_hook_installed
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                       thread_name_prefix="accelwrap-fsync")
            if not _fork_hook_installed and hasattr(os, "register_at_fork"):
                # A forked child (a DataLoader worker) has none of the parent's threads.
                os.register_at_fork(after_in_child=_forget_pool)
                _fork_hook_installed = True
        return _pool


def _forget_pool() -> None:
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()
