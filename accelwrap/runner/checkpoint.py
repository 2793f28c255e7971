"""Atomic, resumable checkpoints on ``accelerator.save_state`` / ``load_state``.

Layout of ``<work_dir>/checkpoints``::

    iter_40/               one complete checkpoint (Accelerate's files + runner_state.json)
    epoch_3/
    latest                 text file: the name of the newest complete checkpoint
    .tmp-iter_48/          a save in progress (or killed mid-way): never loaded

A save writes everything into ``.tmp-<name>`` (``runner_state.json`` last) and the
new pointer into ``.tmp-latest``, fsyncs all of it (every file and folder, concurrently:
see :mod:`accelwrap.runner.durable`), only then renames the folder into place and
swaps the pointer, and fsyncs the checkpoint folder so that both renames are durable
before ``save`` returns. A process killed at any moment leaves the previous checkpoint
loadable and ``latest`` pointing at a complete one. The runner's own state is JSON, and
Accelerate loads the rest with ``weights_only=True`` (no pickled objects are registered
with ``register_for_checkpointing``, whose loader forces ``weights_only=False``).

Example:
    >>> from accelwrap.runner.checkpoint import find_latest
    >>> find_latest('/nonexistent/checkpoints') is None
    True
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError
from accelwrap.runner.durable import fsync_all, tree_paths

STATE_FILE = "runner_state.json"
LATEST_FILE = "latest"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
KILL_ENV = "ACCELWRAP_TEST_KILL"

__all__ = ["CheckpointManager", "find_latest", "fingerprint_problems", "is_complete", "kill_point",
           "load_weights", "merge_sharded", "read_state", "resolve_resume", "restore_rng",
           "rng_snapshot", "shape_map"]


def kill_point(stage: str, iteration: int) -> None:
    """Test hook: SIGKILL this process when ``$ACCELWRAP_TEST_KILL`` is ``stage:iteration``.

    Stages are ``iter`` (after an iteration's bookkeeping) and ``save`` (inside a
    checkpoint write, after the weights are on disk but before the rename).

    Args:
        stage: ``'iter'`` or ``'save'``.
        iteration: The current global iteration.
    """
    if os.environ.get(KILL_ENV) == f"{stage}:{iteration}":
        os.kill(os.getpid(), signal.SIGKILL)


def is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished checkpoint folder (renamed into place, state written)."""
    path = Path(path)
    return (path.is_dir() and not path.name.startswith((TMP_PREFIX, OLD_PREFIX))
            and (path / STATE_FILE).is_file())


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read the runner state stored in checkpoint folder ``path``.

    Raises:
        FileNotFoundError: ``path`` is not a complete checkpoint.
    """
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{str(path)!r} is not a complete accelwrap checkpoint "
                                f"(a folder containing {STATE_FILE})")
    return json.loads((path / STATE_FILE).read_text())


def _complete_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        if is_complete(child):
            found.append((int(read_state(child).get("iter", -1)), child))
    return sorted(found, key=lambda item: (item[0], item[1].stat().st_mtime))


def find_latest(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``directory``, or None.

    ``latest`` is trusted when it names a complete checkpoint; otherwise (a kill
    between rename and pointer update, or a damaged pointer) the complete
    checkpoint with the highest iteration wins.
    """
    directory = Path(directory)
    pointer = directory / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text().strip()
        if name and is_complete(directory / name):
            return directory / name
    found = _complete_checkpoints(directory)
    return found[-1][1] if found else None


def _discard(path: Path) -> None:
    """Delete a checkpoint folder; renamed first, so a kill mid-delete never leaves a
    gutted folder that still holds runner_state.json (it would look complete)."""
    old = path.with_name(f"{OLD_PREFIX}{path.name}")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(path, old)
    shutil.rmtree(old, ignore_errors=True)


class CheckpointManager:
    """Writes, finds, prunes and loads checkpoints of one run.

    Every method that touches Accelerate (``save``, ``load``) is collective: call it
    on all processes. Only the main process renames, prunes and writes JSON.

    Args:
        accelerator: The run's ``Accelerator`` (models, optimizers and schedulers
            already prepared).
        directory: The checkpoint folder (usually ``<work_dir>/checkpoints``).
        max_keep: Keep at most this many complete checkpoints (None or <= 0: all).

    Example:
        >>> # inside a training script, on every process:
        >>> # manager = CheckpointManager(accelerator, 'work_dirs/x/checkpoints', max_keep=3)
        >>> # manager.save('iter_100', {'iter': 100, 'epoch': 1})
    """

    def __init__(self, accelerator: Any, directory: str | os.PathLike, max_keep: int | None = None) -> None:
        self.accelerator = accelerator
        self.directory = Path(directory)
        self.max_keep = max_keep if max_keep and max_keep > 0 else None

    def save(self, name: str, state: dict[str, Any]) -> Path:
        """Write checkpoint ``name`` atomically and point ``latest`` at it.

        Args:
            name: Folder name, e.g. ``'iter_40'``.
            state: JSON-serializable runner state (must contain ``iter``).

        Returns:
            The checkpoint folder.
        """
        acc = self.accelerator
        tmp, final = self.directory / f"{TMP_PREFIX}{name}", self.directory / name
        new_directory = not self.directory.is_dir()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        kill_point("save", int(state["iter"]))
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
            pointer = self.directory / f"{TMP_PREFIX}{LATEST_FILE}"
            pointer.write_text(final.name + "\n")
            # Every file written by any rank, every folder, and the staged pointer.
            fsync_all([*tree_paths(tmp), pointer])
            self._publish(tmp, final, pointer, new_directory)
            self.prune()
        acc.wait_for_everyone()
        return final

    def _publish(self, tmp: Path, final: Path, pointer: Path, new_directory: bool) -> None:
        """Rename the synced checkpoint into place, then swap the pointer; one folder fsync."""
        if final.exists():
            _discard(final)
        # os.rename/os.replace, not Path methods: test_durable.py records these calls (on
        # Python 3.10, Path.rename holds its own reference to the function).
        os.rename(tmp, final)
        os.replace(pointer, self.directory / LATEST_FILE)
        # Both renames live in this folder: one fsync makes them durable (and, on a
        # first save, the parent's entry for the folder itself).
        fsync_all([self.directory, *([self.directory.parent] if new_directory else [])])

    def prune(self) -> None:
        """Delete the oldest complete checkpoints beyond ``max_keep`` (never ``latest``)."""
        if self.max_keep is None:
            return
        latest = find_latest(self.directory)
        found = [path for _, path in _complete_checkpoints(self.directory)]
        for path in found[:-self.max_keep]:
            if path != latest:
                _discard(path)

    def clean_partial(self) -> None:
        """Remove leftovers of killed saves (``.tmp-*``/``.old-*`` folders); main process only."""
        if not self.accelerator.is_main_process or not self.directory.is_dir():
            return
        for child in self.directory.iterdir():
            if child.name.startswith((TMP_PREFIX, OLD_PREFIX)) and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)

    def resolve(self, resume: bool | str | os.PathLike | None) -> Path | None:
        """Turn a ``resume`` setting into a checkpoint folder (see :func:`resolve_resume`)."""
        return resolve_resume(resume, self.directory)

    def load(self, path: str | os.PathLike, fingerprint: dict[str, list[int]] | None = None) -> dict[str, Any]:
        """Load checkpoint ``path`` into the prepared objects; return the runner state.

        Args:
            path: A complete checkpoint folder.
            fingerprint: The current model's ``{parameter name: shape}``; when given,
                a checkpoint of a different model is refused before anything loads.

        Returns:
            The runner state saved with the checkpoint.

        Raises:
            ValueError: The checkpoint belongs to a different model.
            CheckpointError: Accelerate could not load it (the message names the folder).
        """
        state = read_state(path)
        if fingerprint is not None and "model" in state:
            problems = fingerprint_problems(state["model"], fingerprint)
            if problems:
                raise ValueError(f"checkpoint {str(path)!r} was saved from a different model: "
                                 + "; ".join(problems))
        try:
            self.accelerator.load_state(str(path))
        except (RuntimeError, KeyError, FileNotFoundError, ValueError) as err:
            raise CheckpointError(f"loading checkpoint {str(path)!r} failed: {err}") from err
        return state


def rng_snapshot() -> dict[str, Any]:
    """The global RNG states (Python, NumPy, torch CPU and CUDA) of this process."""
    import random

    import numpy as np
    import torch

    snap = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        snap["cuda"] = torch.cuda.get_rng_state_all()
    return snap


def restore_rng(snapshot: dict[str, Any] | None) -> None:
    """Set the global RNG states from :func:`rng_snapshot` (no-op for None)."""
    if snapshot is None:
        return
    import random

    import numpy as np
    import torch

    random.setstate(snapshot["python"])
    np.random.set_state(snapshot["numpy"])
    torch.set_rng_state(snapshot["torch"])
    if "cuda" in snapshot:
        torch.cuda.set_rng_state_all(snapshot["cuda"])


def load_weights(model: Any, source: str | os.PathLike) -> None:
    """Load model weights (strictly) from a checkpoint folder or a weights file.

    Args:
        model: The (unprepared) model.
        source: A checkpoint folder holding ``model.safetensors`` (or
            ``pytorch_model.bin``), a ``.safetensors`` file, or a torch file
            (loaded with ``weights_only=True``; a ``state_dict`` key is looked into).

    Raises:
        FileNotFoundError: Nothing loadable at ``source``.
        ValueError: The weights belong to a different model.

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + '/w.pt'
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), path)
        >>> load_weights(torch.nn.Linear(2, 1), path)
        >>> load_weights(torch.nn.Linear(3, 1), path)
        Traceback (most recent call last):
        ...
        ValueError: load_from=...: shape mismatch: weight: checkpoint [1, 2] vs model [1, 3]
    """
    import torch

    path = Path(source)
    if path.is_dir():
        candidates = [path / "model.safetensors", path / "pytorch_model.bin"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"load_from={str(source)!r}: the folder holds neither "
                                    "model.safetensors nor pytorch_model.bin")
    if not path.is_file():
        raise FileNotFoundError(f"load_from={str(source)!r}: no such file or folder")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        weights = load_file(str(path))
    else:
        weights = torch.load(path, map_location="cpu", weights_only=True)
        weights = weights.get("state_dict", weights) if isinstance(weights, dict) else weights
    problems = fingerprint_problems(shape_map(weights), shape_map(model.state_dict()))
    if problems:
        raise ValueError(f"load_from={str(source)!r} holds weights of a different model: "
                         + "; ".join(problems))
    model.load_state_dict(weights)


def resolve_resume(resume: bool | str | os.PathLike | None, directory: str | os.PathLike) -> Path | None:
    """Turn a ``resume`` setting into a checkpoint folder, or None to start fresh.

    Args:
        resume: ``False``/``None`` (start fresh), ``True``/``'auto'`` (the latest
            complete checkpoint in ``directory``, if any) or a path to a checkpoint
            folder (or to a folder of checkpoints, whose latest is taken).
        directory: The run's checkpoint folder.

    Returns:
        The folder to load, or None.

    Raises:
        FileNotFoundError: An explicit path that is not a complete checkpoint.

    Example:
        >>> resolve_resume(False, 'work_dirs/x/checkpoints') is None
        True
        >>> resolve_resume('auto', '/nonexistent/checkpoints') is None  # nothing saved yet
        True
    """
    if resume in (None, False, "", "none", "false"):
        return None
    if resume is True or resume in ("auto", "true"):
        return find_latest(directory)
    path = Path(resume)
    if is_complete(path):
        return path
    inner = find_latest(path) if path.is_dir() else None
    if inner is not None:
        return inner
    reason = "does not exist" if not path.exists() else f"contains no {STATE_FILE}"
    raise FileNotFoundError(f"resume={str(resume)!r}: the path {reason}; expected a checkpoint "
                            f"folder such as {str(Path(directory) / 'iter_100')!r}, or 'auto'")


def shape_map(state_dict: Mapping[str, Any]) -> dict[str, list[int]]:
    """``{name: shape}`` of a state dict: the model fingerprint :func:`fingerprint_problems` compares.

    Example:
        >>> import torch
        >>> shape_map(torch.nn.Linear(3, 2).state_dict())
        {'weight': [2, 3], 'bias': [2]}
    """
    return {name: list(value.shape) for name, value in state_dict.items()}


def fingerprint_problems(saved: dict[str, list[int]], current: dict[str, list[int]],
                         limit: int = 5) -> list[str]:
    """Differences between two ``{parameter name: shape}`` maps, at most ``limit`` of each kind."""
    missing = [k for k in current if k not in saved]
    unexpected = [k for k in saved if k not in current]
    shapes = [f"{k}: checkpoint {saved[k]} vs model {current[k]}"
              for k in current if k in saved and list(saved[k]) != list(current[k])]
    problems = []
    for label, items in (("missing in the checkpoint", missing),
                         ("not in the model", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            problems.append(f"{label}: {', '.join(items[:limit])}{more}")
    return problems


def merge_sharded(checkpoint: str | os.PathLike, output_dir: str | os.PathLike) -> Path:
    """Merge an FSDP ``SHARDED_STATE_DICT`` checkpoint's model shards into one file.

    Args:
        checkpoint: A checkpoint folder holding ``pytorch_model_fsdp_0/``.
        output_dir: Where ``model.safetensors`` is written.

    Returns:
        The merged weights file.

    Raises:
        FileNotFoundError: The checkpoint has no sharded model folder.

    Example:
        >>> # merge_sharded('work_dirs/fsdp/checkpoints/iter_40', 'merged')
    """
    from accelerate.utils import merge_fsdp_weights

    shards = Path(checkpoint) / "pytorch_model_fsdp_0"
    if not shards.is_dir():
        raise FileNotFoundError(f"{str(checkpoint)!r} has no 'pytorch_model_fsdp_0' folder; "
                                "only FSDP SHARDED_STATE_DICT checkpoints need merging")
    merge_fsdp_weights(str(shards), str(output_dir), safe_serialization=True)
    return Path(output_dir) / "model.safetensors"
