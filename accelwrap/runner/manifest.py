"""Sizes and CRC-32 checksums of a checkpoint's files, and the seal of its state file.

A save records ``[size, crc32]`` of every file of the checkpoint folder (files in
sub-folders, such as FSDP shards, included) except the state file itself
(:func:`build_manifest`). The manifest is stored *in* the state file
(``runner_state.json``, key ``manifest``), which is still written last, so "a folder
holding the state file is complete" stays true; :func:`sealed_text` adds the CRC-32 of
the state's own canonical JSON (key ``state_crc32``), so an edited or damaged state
file is caught as well. Before anything is loaded, :func:`read_sealed` checks the state
file and :func:`verify_files` every file the manifest lists: a missing, truncated,
grown or changed file is a :class:`~accelwrap.errors.DamagedCheckpointError` naming it.

CRC-32 (``zlib.crc32``, about 3 GB/s per core here; files are summed concurrently on
:func:`~accelwrap.runner.durable.run_all`'s pool, and a save sums them while it fsyncs
them) detects damage, not tampering: a checkpoint is trusted data in every other respect.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / 'model.safetensors').write_bytes(b'weights')
    >>> text = sealed_text({'iter': 4, MANIFEST_KEY: build_manifest(folder, skip=('s.json',))})
    >>> _ = (folder / 's.json').write_text(text)
    >>> state = read_sealed(folder / 's.json')
    >>> verify_files(folder, state[MANIFEST_KEY])
    []
    >>> _ = (folder / 'model.safetensors').write_bytes(b'weigh')
    >>> verify_files(folder, state[MANIFEST_KEY])
    [('model.safetensors', 'is truncated: 5 of 7 bytes')]
    >>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

import json
import mmap
import os
import zlib
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from accelwrap.errors import DamagedCheckpointError
from accelwrap.runner.durable import run_all

__all__ = ["MANIFEST_KEY", "SEAL_KEY", "build_manifest", "file_checksum", "read_sealed",
           "sealed_text", "verify_files"]

MANIFEST_KEY = "manifest"
SEAL_KEY = "state_crc32"


def file_checksum(path: str | os.PathLike) -> tuple[int, int]:
    """``(size in bytes, CRC-32)`` of one file, read through ``mmap`` (no copy).

    Raises:
        OSError: The file cannot be read.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return 0, 0
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return size, zlib.crc32(view)


def _files(folder: Path, skip: Iterable[str]) -> list[str]:
    skipped = set(skip)
    names = []
    for root, _, files in os.walk(folder):
        base = Path(root).relative_to(folder)
        names += [(base / name).as_posix() for name in files]
    return sorted(name for name in names if name not in skipped)


def build_manifest(folder: str | os.PathLike, skip: Iterable[str] = (),
                   alongside: Iterable[Callable[[], object]] = ()) -> dict[str, list[int]]:
    """``{relative path: [size, crc32]}`` of every file under ``folder`` but ``skip``.

    Args:
        folder: The checkpoint folder (all writers have finished).
        skip: Relative paths left out (the state file, which holds the manifest).
        alongside: Other I/O to run in the same concurrent batch (a save fsyncs the
            files while they are summed).

    Returns:
        The manifest, paths with ``/`` separators, sorted.
    """
    folder = Path(folder)
    names = _files(folder, skip)
    sums = run_all([*(partial(file_checksum, folder / name) for name in names), *alongside])
    return {name: list(result) for name, result in zip(names, sums)}


def _canonical_crc(state: Mapping[str, Any]) -> int:
    # Through one JSON round trip first, so that the seal written and the seal checked see
    # the same values (tuples become lists, keys become strings).
    plain = json.loads(json.dumps({k: v for k, v in state.items() if k != SEAL_KEY}))
    return zlib.crc32(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode())


def sealed_text(state: Mapping[str, Any]) -> str:
    """The state file's text: ``state`` plus the CRC-32 of its canonical JSON."""
    return json.dumps({**state, SEAL_KEY: _canonical_crc(state)}, indent=1, sort_keys=True)


def read_sealed(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state file written with :func:`sealed_text`, checking its seal.

    A state file without a seal (written before checkpoints were verified) is returned
    as it is.

    Raises:
        DamagedCheckpointError: The file cannot be read, is not UTF-8, not a JSON object,
            or its content does not match its seal (the message names the file).
    """
    path = Path(path)
    damaged = _damage_reporter(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise damaged(f"cannot be read ({err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise damaged(f"is not UTF-8 text (byte {err.start} is 0x{err.object[err.start]:02x})") \
            from err
    try:
        state = json.loads(text)
    except json.JSONDecodeError as err:
        raise damaged(f"is not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") \
            from err
    if not isinstance(state, dict):
        raise damaged(f"holds a JSON {type(state).__name__} instead of an object")
    if SEAL_KEY in state and state[SEAL_KEY] != _canonical_crc(state):
        raise damaged("was changed after it was written (its content does not match its "
                      f"{SEAL_KEY} seal)")
    return state


def _damage_reporter(path: Path) -> Any:
    def damaged(reason: str) -> DamagedCheckpointError:
        return DamagedCheckpointError(path.parent, path.name, reason)
    return damaged


def verify_files(folder: str | os.PathLike,
                 manifest: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Check every file ``manifest`` lists against the files in ``folder``.

    Args:
        folder: The checkpoint folder.
        manifest: ``{relative path: [size, crc32]}`` from :func:`build_manifest`.

    Returns:
        ``(relative path, what is wrong)`` per damaged file; empty when all match.
    """
    folder = Path(folder)
    names = list(manifest)
    found = run_all(partial(_file_problem, folder / name, manifest[name]) for name in names)
    return [(name, problem) for name, problem in zip(names, found) if problem]


def _file_problem(path: Path, record: Any) -> str | None:
    if not (isinstance(record, list) and len(record) == 2
            and all(isinstance(v, int) for v in record)):
        return f"has a malformed manifest entry {record!r} (expected [size, crc32])"
    size, crc = record
    if not path.is_file():
        return "is missing"
    try:
        actual_size, actual_crc = file_checksum(path)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if actual_size < size:
        return f"is truncated: {actual_size:,} of {size:,} bytes"
    if actual_size > size:
        return f"has {actual_size:,} bytes; {size:,} were saved"
    if actual_crc != crc:
        return (f"was changed after the save (CRC-32 0x{actual_crc:08x}, "
                f"saved 0x{crc:08x})")
    return None
