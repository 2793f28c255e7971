"""Plain ``os``-level reads and writes of a checkpoint's small files.

A buffered file object costs more than the work on a small file: ``Path.write_text`` of a
1 kB state file took 0.38 ms inside a save here, ``os.open`` + ``os.write`` 0.08 ms. These
helpers read and write whole files with one ``open``, ``fstat`` and (usually) one ``read``
or ``write``; an open never blocks on a FIFO put in a file's place (it is refused like a
folder).

Example:
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), 'latest')
    >>> write_new(path, b'iter_4')
    >>> read_file(path), file_checksum(path)[0]
    (b'iter_4', 6)
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import zlib

__all__ = ["SMALL_FILE", "file_checksum", "open_regular", "read_file", "small_sum", "write_new"]

#: Files below this size are read and summed in one ``read``; larger ones through ``mmap``
#: (and, in a checkpoint, on the I/O pool: :mod:`accelwrap.runner.manifest`).
SMALL_FILE = 1 << 20


def file_checksum(path: str | os.PathLike) -> tuple[int, int]:
    """``(size in bytes, CRC-32)`` of one regular file, from one ``open`` (files under
    :data:`SMALL_FILE` bytes in one ``read``, larger ones through ``mmap``: no copy).

    Raises:
        OSError: The file cannot be read (``IsADirectoryError`` for anything but a
            regular file: a folder, a FIFO, a device).
    """
    fd, size = open_regular(path)
    try:
        if size < SMALL_FILE:  # a read is cheaper than setting up a mapping
            return small_sum(fd, size)
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            return size, zlib.crc32(view)
    finally:
        os.close(fd)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a small regular file, from one ``open``, ``fstat`` and (usually) one
    ``read``.

    Raises:
        OSError: It cannot be read (``IsADirectoryError`` for anything but a regular file).
    """
    fd, size = open_regular(path)
    try:
        return _read_all(fd, size)
    finally:
        os.close(fd)


def open_regular(path: str | os.PathLike) -> tuple[int, int]:
    """``(an open descriptor, the size)`` of regular file ``path``; the open does not
    block on a FIFO put in its place (``O_NONBLOCK``), which is refused like a folder."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def write_new(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` as the whole content of file ``path`` (created or truncated), with
    plain ``os`` calls (no buffered file object: one ``write`` for a small file).

    Raises:
        OSError: It cannot be written (the file may then hold part of ``data``).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def small_sum(fd: int, size: int) -> tuple[int, int]:
    """``(size, CRC-32)`` of the content of open file ``fd`` of ``size`` bytes (one read)."""
    data = _read_all(fd, size)
    return len(data), zlib.crc32(data)


def _read_all(fd: int, size: int) -> bytes:
    """Every byte of open file ``fd`` (``size``: its size now); one ``read`` of a regular
    file returns them all unless it was cut short, when the rest is read until the end.
    A file that grew meanwhile gives ``size + 1`` bytes (enough to tell)."""
    data = os.read(fd, size + 1)
    while len(data) < size:
        more = os.read(fd, size + 1 - len(data))
        if not more:
            break
        data += more
    return data
