"""Making written files durable: fsync many files and folders at once.

``fsync`` blocks on the disk but releases the GIL, and a journaling file system
(ext4, XFS) commits concurrent fsyncs together. Syncing the files of a checkpoint
one after another pays one disk round trip (journal commit + cache flush) per file;
:func:`fsync_all` issues them from a small thread pool and returns once every one has
finished, which usually costs about one round trip for the lot. Each path still gets
its own ``fsync``, so the guarantee per file is unchanged. :func:`run_all` is the same
pool for any I/O of a checkpoint (the manifest's checksums run there too, alongside the
fsyncs).

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

__all__ = ["fsync_all", "fsync_path", "run_all", "start_all", "tree_paths"]

T = TypeVar("T")

MAX_WORKERS = 8

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_fork_hook_installed = False


def fsync_path(path: str | os.PathLike) -> None:
    """``fsync`` one file or folder (a folder's fsync makes its entries durable).

    Raises:
        OSError: The path cannot be opened or the disk reports a write error.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_all(paths: Iterable[str | os.PathLike]) -> None:
    """``fsync`` every path (files and folders) concurrently; return when all are durable.

    Args:
        paths: Files and folders to sync. Each one is synced exactly once.

    Raises:
        OSError: The first failure, raised after every other fsync has finished.
    """
    run_all(partial(fsync_path, path) for path in paths)


def run_all(tasks: Iterable[Callable[[], T]]) -> list[T]:
    """Run ``tasks`` concurrently on the I/O pool; return their results in order.

    For work that blocks or releases the GIL (``fsync``, ``zlib.crc32`` of a large
    buffer); fewer than two tasks run in the calling thread.

    Raises:
        Exception: The first task's failure, raised after every other task has finished.

    Example:
        >>> run_all([lambda: 1, lambda: 2])
        [1, 2]
    """
    tasks = list(tasks)
    if len(tasks) < 2:
        return [task() for task in tasks]
    return start_all(tasks)()


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
