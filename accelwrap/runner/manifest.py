"""Sizes and CRC-32 checksums of a checkpoint's files, and the seal of its state file.

A save records ``[size, crc32]`` of every file of the checkpoint folder (files in
sub-folders, such as FSDP shards, included) except the state file itself
(:func:`build_manifest`). The manifest is stored *in* the state file
(``runner_state.json``, key ``manifest``), which is still written last, so "a folder
holding the state file is complete" stays true; :func:`sealed_text` ends it with the
CRC-32 of all its other text (key ``state_crc32``), so an edited or damaged state file
is caught as well. :func:`read_sealed` checks the state file and
:func:`verify_files` every file the manifest lists: a missing, truncated, grown or
changed file is a :class:`~accelwrap.errors.DamagedCheckpointError` naming it.
:func:`start_verify` splits that check for a load: what is cheap now (presence, sizes,
files under :data:`~accelwrap.runner.file_io.SMALL_FILE`), the large files' contents on
the I/O pool while the caller reads them.

CRC-32 (``zlib.crc32``, about 2-3 GB/s per core here, and it releases the GIL; large files
are summed concurrently on :func:`~accelwrap.runner.durable.start_all`'s pool, and a
save sums them while it fsyncs them) detects damage, not tampering: a checkpoint is trusted
data in every other respect. Inside :func:`without_zip_crc` ``torch.save`` skips its own
per-record zip CRC-32, which ``torch.load`` never reads.

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

import errno
import json
import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from accelwrap.errors import DamagedCheckpointError
from accelwrap.runner.durable import start_all
from accelwrap.runner.file_io import SMALL_FILE, file_checksum, open_regular, read_file, small_sum

__all__ = ["MANIFEST_KEY", "SEAL_KEY", "build_manifest", "read_sealed", "sealed_text",
           "start_manifest", "start_verify", "verify_files", "without_zip_crc"]

MANIFEST_KEY = "manifest"
SEAL_KEY = "state_crc32"


@contextmanager
def without_zip_crc() -> Iterator[None]:
    """``torch.save`` skips its per-record CRC-32 inside this block.

    ``torch.save`` writes a zip archive and, by default, sums every record for the zip's
    CRC-32 fields, which ``torch.load`` never reads (torch's documentation of
    ``torch.serialization.set_crc32_options``). Inside a checkpoint that work is
    redundant: the manifest sums the whole file once, and is checked at load. Without
    the sums, ``torch.save`` of a 4 MB optimizer state takes about a third of the time.
    A zip tool's test of such a file reports the CRC fields, not damage. The option is
    process-wide: another thread's ``torch.save`` during the block skips them too (its
    file loads the same). Torch versions without the option save as they always did.

    Example:
        >>> import io, torch
        >>> with without_zip_crc():
        ...     torch.save({'w': torch.ones(2)}, buffer := io.BytesIO())
        >>> torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)['w'].tolist()
        [1.0, 1.0]
    """
    import torch

    get = getattr(torch.serialization, "get_crc32_options", None)
    if get is None:
        yield
        return
    before = get()
    torch.serialization.set_crc32_options(False)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(before)


def _scan(folder: str, skip: Iterable[str]) -> list[str]:
    """The relative paths of every file under ``folder`` but ``skip``, sorted (one
    ``scandir`` per folder, no ``stat``; symbolic links to folders are not followed)."""
    skipped, found = set(skip), []
    pending = [(folder, "")]
    while pending:
        path, prefix = pending.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                name = prefix + entry.name
                if entry.is_dir():
                    if not entry.is_symlink():
                        pending.append((entry.path, f"{name}/"))
                elif name not in skipped:
                    found.append(name)
    return sorted(found)


def build_manifest(folder: str | os.PathLike,
                   skip: Iterable[str] = ()) -> dict[str, list[int]]:
    """``{relative path: [size, crc32]}`` of every file under ``folder`` but ``skip``.

    Args:
        folder: The checkpoint folder (all writers have finished).
        skip: Relative paths left out (the state file, which holds the manifest).

    Returns:
        The manifest, paths with ``/`` separators, sorted.
    """
    return start_manifest(folder, skip)[1]()


def start_manifest(folder: str | os.PathLike, skip: Iterable[str] = ()
                   ) -> tuple[list[str], Callable[[], dict[str, list[int]]]]:
    """Sum the small files of :func:`build_manifest` now, start the large ones; return
    the function that ends it.

    Each file is opened once here: one under :data:`SMALL_FILE` bytes is summed at once,
    in the calling thread (handing it to the pool costs more than summing it); a larger
    one is summed on the I/O pool from now on (other I/O started after this call, a
    save's fsyncs, queues behind it).

    Returns:
        ``(the large files' relative paths, a function returning the manifest once every
        sum is done)``.

    Raises:
        OSError: A file cannot be read.
    """
    base = os.fspath(folder)
    names = _scan(base, skip)
    sums: dict[str, tuple[int, int]] = {}
    large = []
    for name in names:
        fd, size = open_regular(f"{base}/{name}")
        try:
            if size < SMALL_FILE:
                sums[name] = small_sum(fd, size)
            else:
                large.append(name)
        finally:
            os.close(fd)
    waiting = start_all(partial(file_checksum, f"{base}/{name}") for name in large)

    def finish() -> dict[str, list[int]]:
        sums.update(zip(large, waiting()))
        return {name: list(sums[name]) for name in names}

    return large, finish


def _canonical_crc(plain: Mapping[str, Any]) -> int:
    # The seal of state files written before the seal line came last: the CRC-32 of the
    # canonical JSON of the parsed content (read_sealed still accepts it).
    body = {key: value for key, value in plain.items() if key != SEAL_KEY}
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


_SEAL_LINE = f',\n"{SEAL_KEY}": '
#: ``json.dumps(value, sort_keys=True)`` without building an encoder per call.
_SORTED_JSON = json.JSONEncoder(sort_keys=True)
_SEAL_BYTES = _SEAL_LINE.encode()


def _text_crc(data: bytes) -> int | None:
    """The CRC-32 of a state file's bytes before its last line (the seal line), or None
    when they do not end with one."""
    body, found, _ = data.rpartition(_SEAL_BYTES)
    return zlib.crc32(body) if found else None


def sealed_text(state: Mapping[str, Any]) -> str:
    """The state file's text: ``state``, one top-level key per line in sorted order, then
    the seal line: the CRC-32 of all the text before it (key ``state_crc32``).

    Written by ``json``'s C encoder (an ``indent`` would replace it by the pure-Python
    one); the seal is a sum of the text, so no second serialization is needed.
    """
    encode = _SORTED_JSON.encode
    lines = (f"{encode(key)}: {encode(state[key])}" for key in sorted(state) if key != SEAL_KEY)
    body = "{\n" + ",\n".join(lines)
    return f"{body}{_SEAL_LINE}{zlib.crc32(body.encode())}\n}}\n"


def read_sealed(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state file written with :func:`sealed_text`, checking its seal.

    A state file without a seal (written before checkpoints were verified) is returned
    as it is.

    Raises:
        FileNotFoundError: There is no such file (or a folder of that name).
        DamagedCheckpointError: The file cannot be read, is not UTF-8, not a JSON object,
            or its content does not match its seal (the message names the file).
    """
    path = Path(path)
    damaged = _damage_reporter(path)
    try:
        data = read_file(path)
        text = data.decode("utf-8")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:
        raise FileNotFoundError(errno.ENOENT, "no such state file", str(path)) from err
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
    if SEAL_KEY in state and state[SEAL_KEY] != _text_crc(data) \
            and state[SEAL_KEY] != _canonical_crc(state):
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
    problems, later = start_verify(folder, manifest)
    return problems or later()


def start_verify(folder: str | os.PathLike, manifest: Mapping[str, Any]
                 ) -> tuple[list[tuple[str, str]], Callable[[], list[tuple[str, str]]]]:
    """Check now what is cheap; start the content checks of the large files.

    Now: every entry's form, every file's presence and size, and the content of files
    under :data:`SMALL_FILE` bytes (one ``open`` and ``read`` each, which also gives their
    presence and size; on the pool they would cost more: their threads contend for the
    GIL with the caller's load); a ``stat`` of each larger file. Started on the I/O
    pool: the content of the larger files (``zlib.crc32`` releases the GIL, so it runs
    while the caller reads them). A missing or resized file is reported before any
    changed content.

    Returns:
        ``(problems found now, a function that waits for the content checks and returns
        their problems)``. When there are problems now, nothing is started.
    """
    base = os.fspath(folder)
    entries, contents, large = [], [], []
    for name, record in manifest.items():
        if not _well_formed(record):
            entries.append((name, f"has a malformed manifest entry {record!r} "
                                  "(expected [size, crc32])"))
        elif record[0] >= SMALL_FILE:
            large.append(name)
            entries.append((name, _entry_problem(f"{base}/{name}", record[0])))
        else:
            read, changed = _small_file_problems(f"{base}/{name}", record)
            entries.append((name, read))
            contents.append((name, changed))
    problems = [(name, problem) for name, problem in entries if problem] \
        or [(name, problem) for name, problem in contents if problem]
    if problems:
        return problems, list
    waiting = start_all(partial(_content_problem, f"{base}/{name}", manifest[name])
                        for name in large)
    return [], lambda: [(name, problem) for name, problem in zip(large, waiting())
                        if problem]


def _well_formed(record: Any) -> bool:
    return isinstance(record, list) and len(record) == 2 \
        and all(isinstance(v, int) and not isinstance(v, bool) for v in record)


def _entry_problem(path: str, saved_size: int) -> str | None:
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "is missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    return _size_problem(info.st_size, saved_size) if stat.S_ISREG(info.st_mode) \
        else "is missing"


def _small_file_problems(path: str, record: list[int]) -> tuple[str | None, str | None]:
    """``(presence or size problem, content problem)`` of a small file, from one read."""
    try:
        size, crc = file_checksum(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return "is missing", None
    except OSError as err:
        return f"cannot be read ({err.strerror or err})", None
    return _size_problem(size, record[0]), _crc_problem(crc, record[1])


def _size_problem(actual: int, saved: int) -> str | None:
    if actual < saved:
        return f"is truncated: {actual:,} of {saved:,} bytes"
    if actual > saved:
        return f"has {actual:,} bytes; {saved:,} were saved"
    return None


def _content_problem(path: str, record: list[int]) -> str | None:
    size, crc = record
    try:
        actual_size, actual_crc = file_checksum(path)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if actual_size != size:  # changed since its size was checked
        return _size_problem(actual_size, size)
    return _crc_problem(actual_crc, crc)


def _crc_problem(actual: int, saved: int) -> str | None:
    if actual != saved:
        return f"was changed after the save (CRC-32 0x{actual:08x}, saved 0x{saved:08x})"
    return None
