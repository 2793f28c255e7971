"""Loading one checkpoint folder: the checks before anything loads, then the load.

:func:`refuse_mismatch` turns away a checkpoint of another model or one lacking a
declared file; :func:`load_verified` loads the folder with Accelerate while the large
files' contents are still being summed
(:func:`~accelwrap.runner.checkpoint_find.start_verification`), and only then accelwrap's
own part files. ``CheckpointManager.load`` is the two in order.

Example:
    >>> from accelwrap.runner.checkpoint_load import refuse_mismatch
    >>> refuse_mismatch('/ckpt/iter_4', {'iter': 4}, layout=None, fingerprint=None)
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError
from accelwrap.runner.checkpoint_find import start_verification
from accelwrap.runner.checkpoint_layout import STATE_FILE, Layout
from accelwrap.runner.checkpoint_parts import (
    FINGERPRINT_KEY,
    load_own_files,
    missing_files,
    missing_message,
)
from accelwrap.runner.manifest import MANIFEST_KEY
from accelwrap.runner.save_failure import is_write_error
from accelwrap.runner.weights import DEEPSPEED_MODEL, fingerprint_problems

__all__ = ["load_verified", "refuse_mismatch"]


def refuse_mismatch(path: str | os.PathLike, state: dict[str, Any], layout: Layout | None,
                    fingerprint: dict[str, list[int]] | None) -> None:
    """Refuse checkpoint ``path`` before anything loads when it cannot be this run's.

    Args:
        path: The checkpoint folder.
        state: Its runner state.
        layout: The run's declared files (None: not checked).
        fingerprint: The current model's ``{parameter name: shape}`` (None: not checked).

    Raises:
        ValueError: The checkpoint belongs to a different model.
        CheckpointError: A declared file is missing (the message names it and its part).
    """
    if fingerprint is not None and FINGERPRINT_KEY in state:
        problems = fingerprint_problems(state[FINGERPRINT_KEY], fingerprint)
        if problems:
            raise ValueError(f"checkpoint {str(path)!r} was saved from a different model: "
                             + "; ".join(problems))
    if layout is not None:
        # Ranks the saving run did not have start from their seeded RNG (as in Accelerate).
        saved_ranks = int(state.get("world_size", layout.world_size))
        if layout.engine == "other" and saved_ranks != layout.world_size:
            raise CheckpointError(_fixed_world_message(path, saved_ranks, layout.world_size))
        if saved_ranks < layout.world_size:
            layout = replace(layout, world_size=saved_ranks)
        missing = missing_files(path, layout, present=_saved_names(state))
        if missing:
            raise CheckpointError(f"cannot resume from checkpoint {str(path)!r}: it lacks "
                                  + missing_message(missing, layout) + _engine_hint(path))


def _saved_names(state: dict[str, Any]) -> set[str] | None:
    """The names at the top of the folder its save wrote, from the manifest (its files'
    presence is verified before they load), or None without one."""
    manifest = state.get(MANIFEST_KEY)
    if not isinstance(manifest, dict):
        return None
    return {STATE_FILE, *(str(name).split("/", 1)[0] for name in manifest)}


def _engine_hint(path: str | os.PathLike) -> str:
    """What a checkpoint written by another engine needs, judged by its files ('' if none)."""
    folder = Path(path)
    if (folder / "pytorch_model_fsdp_0").is_dir():
        return (". It holds FSDP sharded state (pytorch_model_fsdp_0/): resume it under FSDP "
                "(accelerate launch --config_file launch_configs/fsdp.yaml), or start a new run "
                "from its weights: accelwrap merge-shards CHECKPOINT OUT_DIR writes "
                "model.safetensors for load_from")
    if (folder / DEEPSPEED_MODEL).is_file():
        return (". It is a DeepSpeed checkpoint (pytorch_model/): resume it under DeepSpeed "
                "with its world size, or start a new run from its weights with load_from")
    return ""


def _fixed_world_message(path: str | os.PathLike, saved: int, now: int) -> str:
    """Why a checkpoint of an engine that partitions its state per process (DeepSpeed
    ZeRO, Megatron-LM, per-rank FSDP state dicts) cannot resume on another world size."""
    return (f"cannot resume from checkpoint {str(path)!r} on {now} process(es): it was saved "
            f"by {saved} process(es) with an engine that partitions its state per process "
            f"(DeepSpeed ZeRO, Megatron-LM or per-rank FSDP state), which cannot be "
            f"re-partitioned on load. Resume it with {saved} process(es) "
            f"(accelerate launch --num_processes {saved}); to go on with {now}, start a new "
            f"run from its weights (DeepSpeed ZeRO 0-2: load_from={str(path)!r}; ZeRO-3: the "
            f"file its zero_to_fp32.py writes), or train with FSDP2's sharded state, which "
            f"reshards")


def load_verified(accelerator: Any, path: str | os.PathLike, state: dict[str, Any],
                  loop: Any = None, verified: bool = False) -> None:
    """Load checkpoint ``path`` into the prepared objects, its files verified.

    The state file, every file's presence and size and the small files' contents are
    checked before anything loads; the content of files of 1 MiB and more is summed
    on the I/O pool while Accelerate reads them, and checked before accelwrap's own
    part files load. A changed byte in a large file is therefore raised after
    ``load_state``, the objects holding part of the checkpoint: load another one (as
    ``resume='auto'`` does) or stop. With ``verified`` (every file of ``path`` was just
    read and checked, as ``resume='auto'`` does to pick it), the files are not read again.

    Raises:
        DamagedCheckpointError: A file fails its manifest check (names it and its part).
        CheckpointError: Accelerate could not load the checkpoint (names the folder,
            the error and its type).
    """
    checked = None if verified else start_verification(path, state)
    try:
        accelerator.load_state(str(path))
    except Exception as err:
        if checked is not None:
            checked()  # a damaged file explains a failed load best
        if not (is_write_error(err) or isinstance(err, (KeyError, ValueError, EOFError))
                or type(err).__name__ == "UnpicklingError"):
            raise
        raise CheckpointError(f"loading checkpoint {str(path)!r} failed: "
                              f"{type(err).__name__}: {err}") from err
    if checked is not None:
        checked()
    load_own_files(loop, Path(path))
