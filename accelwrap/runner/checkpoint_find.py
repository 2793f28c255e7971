"""Finding checkpoints: complete folders, the ``latest`` pointer, verification, ``resume``.

A folder of ``<work_dir>/checkpoints`` is *complete* when it holds ``runner_state.json``
(written last) and is no ``.tmp-*``/``.old-*`` leftover; it is *intact* when, in
addition, its state file and every file of its manifest check out
(:mod:`accelwrap.runner.manifest`). ``resume='auto'`` takes the newest intact
checkpoint (the one ``latest`` names first, then by iteration) and logs every one it
skipped and why; an explicit checkpoint path is never swapped for another. Nothing here
raises on a damaged *old* checkpoint: listing, pruning and finding read each state file
with :func:`state_or_problem`.

Example:
    >>> find_latest('/nonexistent/checkpoints') is None
    True
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError, DamagedCheckpointError
from accelwrap.runner.checkpoint_parts import STATE_FILE, part_named
from accelwrap.runner.manifest import MANIFEST_KEY, read_sealed, start_verify, verify_files

__all__ = ["LATEST_FILE", "OLD_PREFIX", "TMP_PREFIX", "checkpoints_by_iter", "find_latest",
           "is_complete", "newest_intact", "read_pointer", "read_state", "resolve_resume",
           "resolve_resume_verified", "start_verification", "state_or_problem",
           "verify_before_reading", "verify_checkpoint", "wants_resume"]

logger = logging.getLogger("accelwrap")

LATEST_FILE = "latest"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished checkpoint folder (renamed into place, state written)."""
    path = Path(path)  # a file inside it means a folder: one stat
    return _published(path) and (path / STATE_FILE).is_file()


def _published(path: Path) -> bool:
    """Whether ``path`` is named as a published folder (not a save or delete in progress)."""
    return not path.name.startswith((TMP_PREFIX, OLD_PREFIX))


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read the runner state stored in checkpoint folder ``path`` (its seal checked).

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint.
        DamagedCheckpointError: ``runner_state.json`` is unreadable, not JSON, changed,
            or has no integer ``iter``.
    """
    path = Path(path)
    incomplete = FileNotFoundError(f"{str(path)!r} is not a complete accelwrap checkpoint "
                                   f"(a folder containing {STATE_FILE})")
    if not _published(path):
        raise incomplete
    try:  # is_complete's check, the state file's stat left to its read
        state = read_sealed(path / STATE_FILE)
    except FileNotFoundError:
        raise incomplete from None
    if not isinstance(state.get("iter"), int) or isinstance(state["iter"], bool):
        raise DamagedCheckpointError(path, STATE_FILE, f"has no integer 'iter' (got "
                                     f"{state.get('iter')!r})")
    return state


def state_or_problem(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(state, None)``, or ``(None, why it cannot be read)`` for a damaged state file."""
    try:
        return read_state(path), None
    except DamagedCheckpointError as err:
        return None, f"{err.file} {err.reason}"


def _label(name: str) -> str:
    part = part_named(name) if name != STATE_FILE else None
    return f"{name} (part '{part.name}')" if part else name


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check a checkpoint's state file and every file of its manifest; return its state.

    A checkpoint without a manifest (saved before accelwrap verified checkpoints) is
    accepted with a warning.

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint.
        DamagedCheckpointError: A file is missing, truncated, grown or changed; the
            message names it, its part and the checkpoint (and counts the others).
    """
    state = read_state(path)
    start_verification(path, state)()
    return state


def start_verification(path: str | os.PathLike,
                       state: dict[str, Any]) -> Callable[[], None]:
    """Check now what is cheap in checkpoint ``path``; start checking the rest.

    Checked before this returns: the manifest's form, every file's presence and size,
    and the content of the small files (:func:`~accelwrap.runner.manifest.start_verify`).
    The content of the large files is summed on the I/O pool meanwhile; the returned
    function waits for it.

    Args:
        path: A complete checkpoint folder.
        state: Its state, from :func:`read_state`.

    Returns:
        A function that returns once every file is checked, or raises.

    Raises:
        DamagedCheckpointError: Raised here or by the returned function: a file is
            missing, truncated, grown or changed; the message names it, its part and the
            checkpoint (and counts the others).
    """
    manifest = state.get(MANIFEST_KEY)
    if manifest is None:
        logger.warning("checkpoint %s has no manifest (saved before accelwrap verified "
                       "checkpoints): its files are not checked", path)
        return lambda: None
    if not isinstance(manifest, dict):
        raise DamagedCheckpointError(path, STATE_FILE, f"has a malformed {MANIFEST_KEY!r}")
    problems, later = start_verify(path, manifest)
    _raise_damage(path, problems)
    return lambda: _raise_damage(path, later())


def _raise_damage(path: str | os.PathLike, problems: list[tuple[str, str]]) -> None:
    if problems:
        name, reason = problems[0]
        others = "".join(f"; also {_label(n)} {r}" for n, r in problems[1:])
        raise DamagedCheckpointError(path, _label(name), reason + others)


def verify_before_reading(path: str | os.PathLike, holding: str | None = None) -> str | None:
    """Check a checkpoint before a tool reads it (``accelwrap test``, ``merge-shards``).

    A complete checkpoint folder is checked as a resume checks it
    (:func:`verify_checkpoint`); a file inside one, against its manifest entry. A folder
    without ``runner_state.json`` (a user's own ``accelerator.save_state`` folder) or
    without a manifest (saved before accelwrap verified checkpoints) cannot be checked:
    the returned note says so, and reading it goes ahead. A path that does not exist,
    or a plain weights file, is left to the tool.

    Args:
        path: The checkpoint folder, or a file in one.
        holding: A file or folder an alternative must hold to be named
            (``'pytorch_model_fsdp_0'`` for ``merge-shards``).

    Returns:
        None when verified (or nothing to verify), else the note for the user.

    Raises:
        DamagedCheckpointError: A file is missing, truncated or changed (or the state
            file is damaged); the message names it, the checkpoint, and the newest intact
            checkpoint beside it, if any.

    Example:
        >>> verify_before_reading('/nonexistent/iter_4') is None
        True
    """
    path = Path(path)
    folder = path.parent if path.is_file() else path
    if not is_complete(folder):
        return (f"{folder} holds no {STATE_FILE} (not a checkpoint accelwrap saved): its "
                "files are not checked" if folder == path and path.is_dir() else None)
    try:
        state = read_state(folder)
        manifest = state.get(MANIFEST_KEY)
        if manifest is None:
            return (f"checkpoint {folder} has no manifest (saved before accelwrap verified "
                    "checkpoints): its files are not checked")
        if folder == path:
            verify_checkpoint(folder)
            return None
        name = path.relative_to(folder).as_posix()
        if isinstance(manifest, dict) and name in manifest:
            problems = verify_files(folder, {name: manifest[name]})
            if problems:
                raise DamagedCheckpointError(folder, name, problems[0][1])
        return None
    except DamagedCheckpointError as err:
        raise DamagedCheckpointError(err.checkpoint, err.file, err.reason
                                     + _alternative(folder, holding)) from None


def _alternative(damaged: Path, holding: str | None) -> str:
    other, _ = newest_intact(damaged.parent)
    if other is None or other == damaged or (holding and not (other / holding).exists()):
        return "; no intact checkpoint beside it"
    return f"; the newest intact checkpoint beside it is {other}"


def checkpoints_by_iter(directory: str | os.PathLike
                        ) -> tuple[list[tuple[int, Path]], list[tuple[Path, str]]]:
    """The complete checkpoints of ``directory``, oldest first, and the unreadable ones.

    Unreadable: a damaged ``runner_state.json``, or none in a folder that holds
    checkpoint files (``.tmp-*``/``.old-*`` leftovers of killed saves aside).

    Returns:
        ``([(iter, folder), ...] by iteration then mtime, [(folder, problem), ...])``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return [], []
    found, unreadable = [], []
    for child in directory.iterdir():
        if not is_complete(child):
            if _lost_its_state(child):
                unreadable.append((child, f"{STATE_FILE} is missing"))
            continue
        state, problem = state_or_problem(child)
        if problem is not None:
            unreadable.append((child, problem))
        else:
            found.append((state["iter"], child))
    return sorted(found, key=lambda item: (item[0], item[1].stat().st_mtime)), unreadable


def _lost_its_state(folder: Path) -> bool:
    if folder.name.startswith((TMP_PREFIX, OLD_PREFIX)) or not folder.is_dir():
        return False
    return any(part_named(child.name) is not None for child in folder.iterdir())


def read_pointer(directory: str | os.PathLike) -> tuple[str | None, str | None]:
    """``(name, None)`` from ``latest``, ``(None, None)`` without one, ``(None, problem)``."""
    pointer = Path(directory) / LATEST_FILE
    if not pointer.is_file():
        return None, None
    try:
        name = pointer.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"{LATEST_FILE} is not UTF-8 text"
    except OSError as err:
        return None, f"{LATEST_FILE} cannot be read ({err.strerror or err})"
    if not name or any(c in name for c in "/\\\0\n") or name.startswith("."):
        return None, f"{LATEST_FILE} holds {name[:80]!r}, which is no checkpoint name"
    if not is_complete(Path(directory) / name):
        return None, f"{LATEST_FILE} names {name!r}, which is no complete checkpoint"
    return name, None


def find_latest(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``directory``, or None (no file checks).

    ``latest`` is trusted when it names a complete checkpoint; otherwise (a kill
    between rename and pointer update, or a damaged pointer) the complete
    checkpoint with the highest iteration wins.
    """
    directory = Path(directory)
    name, _ = read_pointer(directory)
    if name is not None:
        return directory / name
    found, _ = checkpoints_by_iter(directory)
    return found[-1][1] if found else None


def newest_intact(directory: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes :func:`verify_checkpoint`, and what was skipped.

    Candidates: the one ``latest`` names, then the others from the highest iteration
    down. Every file of a candidate is read (its checksums), so this costs one read of
    the checkpoint.

    Returns:
        ``(folder or None, ["<folder>: <why>", ...])`` (a damaged pointer and every
        damaged checkpoint newer than the one chosen, or unreadable, are listed).
    """
    directory = Path(directory)
    name, pointer_problem = read_pointer(directory)
    found, unreadable = checkpoints_by_iter(directory)
    skipped = [f"{path}: {problem}" for path, problem in unreadable]
    if pointer_problem is not None:
        skipped.insert(0, f"{directory / LATEST_FILE}: {pointer_problem}")
    candidates = [path for _, path in reversed(found)]
    if name is not None and directory / name in candidates:
        candidates.remove(directory / name)
        candidates.insert(0, directory / name)
    for path in candidates:
        try:
            verify_checkpoint(path)
        except DamagedCheckpointError as err:
            skipped.append(f"{path}: {err.file} {err.reason}")
            continue
        return path, skipped
    return None, skipped


def _auto(directory: Path, resume: Any) -> Path | None:
    path, skipped = newest_intact(directory)
    for line in skipped:
        logger.warning("resume auto: skipped %s", line)
    if skipped and path is not None:
        logger.warning("resume auto: resuming from %s, the newest intact checkpoint", path)
    pointer = str(directory / LATEST_FILE)
    damaged = [line for line in skipped if not line.startswith(pointer + ":")]
    if path is None and damaged:
        # Starting over would silently replace them: the user decides.
        raise CheckpointError(
            f"resume={str(resume)!r}: no intact checkpoint in {directory}; skipped "
            + "; ".join(damaged) + ". Repair or move them, resume from a checkpoint "
            "elsewhere, or start over (--overwrite)")
    return path


def wants_resume(resume: Any) -> bool:
    """Whether a ``resume`` setting asks to resume (``'auto'``, True or a path).

    Example:
        >>> wants_resume('auto'), wants_resume(False), wants_resume('none')
        (True, False, False)
    """
    return resume not in (None, False, "", "none", "false")


def resolve_resume(resume: bool | str | os.PathLike | None,
                   directory: str | os.PathLike) -> Path | None:
    """Turn a ``resume`` setting into a checkpoint folder, or None to start fresh.

    Args:
        resume: ``False``/``None`` (start fresh), ``True``/``'auto'`` (the newest intact
            checkpoint in ``directory``, if any; damaged ones are skipped and logged) or
            a path to a checkpoint folder (its state file checked now, every other file
            when it loads: a damaged one is an error, never replaced by another), or to
            a folder of checkpoints (its newest intact one is taken).
        directory: The run's checkpoint folder.

    Returns:
        The folder to load, or None.

    Raises:
        FileNotFoundError: An explicit path that is not a complete checkpoint.
        DamagedCheckpointError: An explicit checkpoint whose state file is damaged.
        CheckpointError: ``'auto'`` (or a folder of checkpoints) where every checkpoint
            is damaged: starting over would replace them unasked.

    Example:
        >>> resolve_resume(False, 'work_dirs/x/checkpoints') is None
        True
        >>> resolve_resume('auto', '/nonexistent/checkpoints') is None  # nothing saved yet
        True
    """
    return resolve_resume_verified(resume, directory)[0]


def resolve_resume_verified(resume: bool | str | os.PathLike | None,
                            directory: str | os.PathLike) -> tuple[Path | None, bool]:
    """:func:`resolve_resume`, and whether every file of the folder was verified.

    ``'auto'`` (or a folder of checkpoints) reads every file of the folder it picks
    (:func:`newest_intact`); a load right after need not read them again.

    Returns:
        ``(the folder to load or None, whether its files were all verified just now)``.

    Raises:
        Exception: As :func:`resolve_resume`.
    """
    if not wants_resume(resume):
        return None, False
    if resume is True or resume in ("auto", "true"):
        path = _auto(Path(directory), resume)
        return path, path is not None
    path = Path(resume)
    if is_complete(path):
        read_state(path)  # its state file now (every other file when it loads)
        return path, False
    inner = _auto(path, resume) if path.is_dir() else None
    if inner is not None:
        return inner, True
    reason = "does not exist" if not path.exists() else f"contains no {STATE_FILE}"
    raise FileNotFoundError(f"resume={str(resume)!r}: the path {reason}; expected a checkpoint "
                            f"folder such as {str(Path(directory) / 'iter_100')!r}, or 'auto'")
