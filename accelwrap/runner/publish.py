"""Publishing a written checkpoint folder: seal it, rename it into place, make it durable.

:func:`seal` sums every file of the temporary folder and writes ``runner_state.json``
last, holding the manifest (:mod:`accelwrap.runner.manifest`); the large files' fsyncs
start at once, overlapping their summing. :func:`publish` renames the folder into place,
rewrites ``latest`` in place (:func:`write_pointer`)
and syncs everything else (the small files, the state file, the folders, the pointer) in
one concurrent round alongside the large files' fsyncs (:mod:`accelwrap.runner.durable`),
returning once all of it is durable. Until then a power loss may leave the new folder
with a lost or damaged file, or ``latest`` damaged: the manifest check catches either,
and ``resume='auto'`` takes the previous checkpoint, which the caller prunes only after
:func:`publish` returns. A killed process loses nothing (the page cache outlives it). A
sync that fails takes the new folder back out, so the previous checkpoint stays the
newest. :func:`discard` deletes a checkpoint folder so that no kill leaves half of one.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> checkpoints = Path(tempfile.mkdtemp())
    >>> tmp = checkpoints / '.tmp-iter_4'; tmp.mkdir()
    >>> _ = (tmp / 'model.safetensors').write_bytes(b'weights')
    >>> final = checkpoints / 'iter_4'
    >>> publish(tmp, final, checkpoints / 'latest', False, *seal(tmp, final, {'iter': 4}))
    >>> sorted(p.name for p in final.iterdir()), (checkpoints / 'latest').read_text()
    (['model.safetensors', 'runner_state.json'], 'iter_4\\n')
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

from accelwrap.runner.checkpoint_find import LATEST_FILE, OLD_PREFIX
from accelwrap.runner.checkpoint_parts import STATE_FILE
from accelwrap.runner.durable import start_fsync
from accelwrap.runner.file_io import write_new
from accelwrap.runner.manifest import MANIFEST_KEY, sealed_text, start_manifest

__all__ = ["discard", "publish", "seal", "write_pointer"]


def seal(tmp: Path, final: Path, state: dict[str, Any]) -> tuple[Callable[[], None], list[str]]:
    """Sum every file of ``tmp`` and write its state file (``state`` plus the manifest).

    Args:
        tmp: The temporary folder, every writer finished.
        final: The name it will be published under.
        state: The runner state (JSON values).

    Returns:
        ``(the wait for the large files' fsyncs, started now; what is left to sync, as
        paths inside the folder: its sub-folders, the small files, the state file)``.
    """
    large, summed = start_manifest(tmp, skip=(STATE_FILE,))
    synced = start_fsync(_inside(tmp, large))
    try:
        manifest = summed()
        write_new(tmp / STATE_FILE, sealed_text({**state, MANIFEST_KEY: manifest}).encode())
    except BaseException:
        with suppress(OSError):
            synced()
        raise
    started = set(large)
    return synced, [*_folders(manifest), *(name for name in manifest if name not in started),
                    STATE_FILE]


def _inside(folder: Path, names: Iterable[str]) -> list[str]:
    """The paths of ``names`` (relative, with ``/``) inside ``folder``."""
    base = os.fspath(folder)
    return [f"{base}/{name}" for name in names]


def _folders(names: Iterable[str]) -> list[str]:
    """The sub-folders holding ``names`` (relative paths with ``/``), sorted.

    Example:
        >>> _folders(['a.bin', 'fsdp_0/x/1.distcp', 'fsdp_0/y.distcp'])
        ['fsdp_0', 'fsdp_0/x']
    """
    found = set()
    for name in names:
        parts = name.split("/")[:-1]
        found.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    return sorted(found)


def publish(tmp: Path, final: Path, pointer: Path | None, new_directory: bool,
            synced: Callable[[], None], unsynced: list[str]) -> None:
    """Rename ``tmp`` to ``final``, point ``latest`` at it, and return once it is durable.

    Args:
        tmp: The sealed temporary folder (:func:`seal`).
        final: Its published path (a folder of that name is replaced only once the new
            content is durable).
        pointer: ``latest`` to rewrite, or None (a best checkpoint leaves it alone).
        new_directory: The checkpoints folder was created by this save (its parent
            holds that entry and is synced too).
        synced: The wait :func:`seal` returned.
        unsynced: The paths inside the folder :func:`seal` returned (not yet syncing).

    Raises:
        OSError: A rename or a sync failed (after a failed sync ``final`` is removed
            again and ``latest`` with it when it named it).
    """
    directory = final.parent
    replacing = final.exists()
    if replacing:  # the new content is durable before the folder of that name goes
        _wait_all(synced, start_fsync([tmp, *_inside(tmp, unsynced)]))
        synced = _nothing
        discard(final)
    # os.rename, not Path.rename: test_durable.py records these calls (on Python 3.10,
    # Path.rename holds its own reference to the function).
    os.rename(tmp, final)
    if pointer is not None:
        write_pointer(directory, final.name)
    # The checkpoints folder holds the rename (on a first save, its parent holds it).
    contents = [] if replacing else [final, *_inside(final, unsynced)]  # else synced above
    rest = start_fsync([*contents, *([pointer] if pointer is not None else []), directory,
                        *([directory.parent] if new_directory else [])])
    try:
        _wait_all(synced, rest)
    except BaseException:
        if not replacing:
            _withdraw(final, pointer)
        raise


def write_pointer(directory: str | os.PathLike, name: str) -> Path:
    """Point ``latest`` in ``directory`` at checkpoint ``name``; return the pointer's path.

    The record (the name, a newline) is one ``pwrite`` over the old one, in place, padded
    with spaces to the old record's length: the file never shrinks, so there is no
    truncation, and no old file to free as a rename over it would (each a journal
    transaction: 0.3 ms of a small model's save here). A killed process cannot tear one
    write; whatever else leaves the pointer damaged (a power loss before the save's sync
    of it) is reported by ``checkpoint_find.read_pointer``, and ``find_latest`` then takes
    the complete checkpoint with the highest iteration.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = write_pointer(folder, 'iter_100'); _ = write_pointer(folder, 'iter_8')
        >>> (folder / 'latest').read_text()
        'iter_8\\n  '
    """
    pointer = Path(directory) / LATEST_FILE
    record = f"{name}\n".encode()
    fd = os.open(pointer, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, record.ljust(os.fstat(fd).st_size, b" "), 0)
    finally:
        os.close(fd)
    return pointer


def discard(path: Path) -> None:
    """Delete a checkpoint folder; renamed first, so a kill mid-delete never leaves a
    gutted folder that still holds runner_state.json (it would look complete)."""
    old = path.with_name(f"{OLD_PREFIX}{path.name}")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(path, old)
    shutil.rmtree(old, ignore_errors=True)


def _withdraw(final: Path, latest: Path | None) -> None:
    """Take back a published folder whose files could not be made durable."""
    with suppress(OSError):
        discard(final)
        if latest is not None:
            latest.unlink()  # it named ``final``: the newest complete one is found instead


def _wait_all(*waits: Callable[[], None]) -> None:
    """Call every wait; raise the first failure after all of them returned."""
    errors = []
    for wait in waits:
        try:
            wait()
        except OSError as err:
            errors.append(err)
    if errors:
        raise errors[0]


def _nothing() -> None:
    """A wait with nothing to wait for."""
