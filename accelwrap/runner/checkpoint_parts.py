"""What a checkpoint contains: every part, its files, who writes it and what it is for.

:data:`PARTS` is the one declaration. :class:`~accelwrap.runner.checkpoint.CheckpointManager`
reads it to check that a save wrote, and a checkpoint to be loaded holds, every declared
file; :func:`collect_state` / :func:`restore_state` build and apply ``runner_state.json``
from the parts accelwrap writes; the README's checkpoint table is :func:`parts_table`.

A checkpoint folder is exactly what ``accelerator.save_state`` writes plus
``runner_state.json``, so a user's own ``accelerator.load_state(folder)`` loads it. Parts
written by Accelerate are declared with Accelerate's file names (``model.safetensors``,
``optimizer_1.bin``, ``random_states_0.pkl``, ...), for the run's
:class:`~accelwrap.runner.checkpoint_layout.Layout` (how many models, optimizers and
schedulers were prepared, a loss scaler, the process count, the engine). A later part (EMA)
is one more :class:`CheckpointPart` entry: its files (their count read from the layout) and,
for a part accelwrap writes into its own file, ``save``/``load`` hooks that the manager
calls with the training loop.

Example:
    >>> layout = Layout(models=1, optimizers=1, schedulers=2, world_size=1)
    >>> declared_files(layout)
    ['model.safetensors', 'optimizer.bin', 'scheduler.bin', 'scheduler_1.bin', \
'random_states_0.pkl', 'runner_state.json']
    >>> part_of('scheduler_1.bin', layout).name
    'schedulers'
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelwrap.errors import CheckpointError
from accelwrap.runner.checkpoint_layout import STATE_FILE, Files, Layout
from accelwrap.runner.data_position import POSITION_KEYS
from accelwrap.runner.ema import EMA_FILE
from accelwrap.runner.log_output import HELD_KEY
from accelwrap.runner.manifest import MANIFEST_KEY, SEAL_KEY
from accelwrap.runner.state_parts import (
    data_position,
    held_scalars,
    load_ema,
    progress,
    report_scheduler_edits,
    restore_best,
    restore_data_position,
    restore_held_scalars,
    restore_progress,
    restore_wrapper_counters,
    run_scheduler_settings,
    save_ema,
    wrapper_counters,
)

__all__ = ["ACCELERATE", "ACCELWRAP", "FINGERPRINT_KEY", "PARTS", "STATE_FILE", "CheckpointPart",
           "collect_state", "declared_files", "load_own_files", "missing_files", "missing_message",
           "part_named", "part_of", "parts_table", "restore_state", "save_own_files"]

logger = logging.getLogger("accelwrap")

FINGERPRINT_KEY = "model"
ACCELERATE = "Accelerate's `save_state`"
ACCELWRAP = "accelwrap"


@dataclass(frozen=True)
class CheckpointPart:
    """One part of a checkpoint.

    Attributes:
        name: What the README and error messages call it.
        writer: :data:`ACCELERATE` (written and read by ``save_state``/``load_state``) or
            :data:`ACCELWRAP`.
        purpose: What it is for.
        files: Its files (for a part stored in ``runner_state.json``: that file).
        keys: Its keys in ``runner_state.json`` (parts accelwrap stores there).
        collect: ``loop -> values of keys`` (same order), for ``runner_state.json``.
        restore: ``(loop, saved state)``: put the part back after ``load_state``.
        save: ``(loop, folder)``: write an accelwrap part's own files into ``folder``.
        load: ``(loop, folder)``: read them back.
    """

    name: str
    writer: str
    purpose: str
    files: tuple[Files, ...] = field(default=())
    keys: tuple[str, ...] = ()
    collect: Callable[[Any], tuple] | None = None
    restore: Callable[[Any, Mapping[str, Any]], None] | None = None
    save: Callable[[Any, Path], None] | None = None
    load: Callable[[Any, Path], None] | None = None


def _one(layout: Layout) -> int:
    return 1


_STATE = (Files(STATE_FILE, _one),)

PARTS: tuple[CheckpointPart, ...] = (
    CheckpointPart(
        "model", ACCELERATE,
        "Weights of each prepared model (a model with `train_step`: each direct sub-module "
        "with parameters, in definition order).",
        files=(Files("model{_i}.safetensors", lambda lay: lay.models, ("plain",)),
               Files("pytorch_model_fsdp_{i}/", lambda lay: lay.models, ("fsdp_sharded",)),
               Files("pytorch_model_fsdp{_i}.bin", lambda lay: lay.models, ("fsdp_full",)))),
    CheckpointPart(
        "optimizers", ACCELERATE,
        "State of each optimizer (one per `OptimWrapperDict` member): moment buffers, steps, "
        "param groups.",
        files=(Files("optimizer{_i}.bin", lambda lay: lay.optimizers, ("plain", "fsdp_full")),
               Files("optimizer_{i}/", lambda lay: lay.optimizers, ("fsdp_sharded",)))),
    CheckpointPart(
        "schedulers", ACCELERATE,
        "Progress of each parameter scheduler (`last_step`, ...), in the order they were built.",
        files=(Files("scheduler{_i}.bin", lambda lay: lay.schedulers),)),
    CheckpointPart(
        "loss scaler", ACCELERATE,
        "The fp16 `GradScaler`'s scale and growth tracker (fp16 runs only).",
        files=(Files("scaler.pt", lambda lay: int(lay.scaler)),)),
    CheckpointPart(
        "RNG states", ACCELERATE,
        "Python, NumPy and torch (CPU, CUDA) generators of each process, and Accelerate's "
        "step: dropout and shuffling continue as if never stopped.",
        files=(Files("random_states_{rank}.pkl", _one),)),
    CheckpointPart(
        "runner progress", ACCELWRAP,
        "Epochs and iterations done, run length, process count; `iter` orders checkpoints. "
        "Written last: a folder holding it is complete.",
        files=_STATE, keys=("format", "epoch", "iter", "max_iters", "world_size"),
        collect=progress, restore=restore_progress),
    CheckpointPart(
        "manifest", ACCELWRAP,
        "Size and CRC-32 of every other file of the folder, and the CRC-32 of this file's own "
        "text: every file is verified when the checkpoint loads (see `manifest.py`).",
        files=_STATE, keys=(MANIFEST_KEY, SEAL_KEY)),
    CheckpointPart(
        "data position", ACCELWRAP,
        "Batches and global samples of the current epoch consumed, and the layout (samples "
        "per iteration, iterations and samples per epoch): the same layout skips the batches, "
        "another world size or batch size continues at the first unseen sample of the "
        "epoch's seeded order (`accelwrap.runner.data_position`).",
        files=_STATE, keys=POSITION_KEYS,
        collect=data_position, restore=restore_data_position),
    CheckpointPart(
        "optim wrapper counters", ACCELWRAP,
        "Per OptimWrapper member: `inner_count`, skipped fp16 steps, `base_param_settings` and "
        "the update counters (`nonfinite_skips`, `spike_skips`, the spike rule's loss window).",
        files=_STATE, keys=("wrappers",),
        collect=wrapper_counters, restore=restore_wrapper_counters),
    CheckpointPart(
        "scheduler settings", ACCELWRAP,
        "Each scheduler's settings (type, window, arguments), in build order: not restored "
        "(the run's own settings win) but compared, and every edit is logged on resume.",
        files=_STATE, keys=("schedulers",),
        collect=run_scheduler_settings, restore=report_scheduler_edits),
    CheckpointPart(
        "model fingerprint", ACCELWRAP,
        "`{parameter: shape}`: resuming refuses a checkpoint of another model before loading.",
        files=_STATE, keys=(FINGERPRINT_KEY,),
        collect=lambda loop: (loop.runner.fingerprint,)),
    CheckpointPart(
        "run folder", ACCELWRAP,
        "The run's folder under the work dir (text log, `scalars.jsonl`, TensorBoard events): "
        "a resumed run continues it.",
        files=_STATE, keys=("run_dir",),
        collect=lambda loop: (getattr(getattr(loop.runner, "run_dir", None), "name", None),)),
    CheckpointPart(
        "EMA", ACCELWRAP,
        "`custom_hooks` `EMAHook`: the averaged weights (`state_dict` names) and, in the "
        "metadata, the update count; main process, `safetensors` (EMA runs only).",
        files=(Files(EMA_FILE, lambda lay: int(lay.ema)),),
        save=save_ema, load=load_ema),
    CheckpointPart(
        "best checkpoint", ACCELWRAP,
        "`save_best`'s metric, rule, best value and its `best_<metric>_epoch_<n>` folder: a "
        "resumed run compares with, and replaces, that best.",
        files=_STATE, keys=("best",),
        collect=lambda loop: (loop.best.state() if loop.best is not None else None,),
        restore=restore_best),
    CheckpointPart(
        "held log scalars", ACCELWRAP,
        "The optimizer scalars (`lr`, `grad_norm`, ...) when the checkpoint was written: a "
        "resumed run logs them until its first update, as the uninterrupted run does.",
        files=_STATE, keys=(HELD_KEY,), collect=held_scalars, restore=restore_held_scalars),
)


# ---------------------------------------------------------------- reading the declaration
def declared_files(layout: Layout, writer: str | None = None) -> list[str]:
    """Names at the top of a checkpoint folder of ``layout`` (only ``writer``'s if given)."""
    return list(_declared(layout, writer))


@functools.lru_cache(maxsize=32)  # every save and load asks, for the run's one layout
def _declared(layout: Layout, writer: str | None) -> tuple[str, ...]:
    names: list[str] = []
    for part in PARTS:
        if writer is None or part.writer == writer:
            names += [n for files in part.files for n in files.names(layout) if n not in names]
    return tuple(names)


def part_of(name: str, layout: Layout) -> CheckpointPart:
    """The part a file of a ``layout`` checkpoint belongs to.

    Raises:
        KeyError: ``name`` is no declared file of ``layout``.
    """
    for part in PARTS:
        if any(name in files.names(layout) for files in part.files):
            return part
    raise KeyError(f"{name!r} is no declared checkpoint file; expected one of "
                   f"{declared_files(layout)}")


def _pattern_regex(pattern: str) -> re.Pattern:
    tokens = {"{_i}": r"(?:_\d+)?", "{i}": r"\d+", "{rank}": r"\d+"}
    pieces = re.split(r"(\{_i\}|\{i\}|\{rank\})", pattern.rstrip("/"))
    return re.compile("".join(tokens.get(piece, re.escape(piece)) for piece in pieces) + r"\Z")


def part_named(name: str) -> CheckpointPart | None:
    """The part a checkpoint file belongs to, by its name alone (any layout), or None.

    ``name`` may be a path inside the folder (``pytorch_model_fsdp_0/__0_0.distcp``): its
    first component decides.

    Example:
        >>> part_named('random_states_3.pkl').name, part_named('optimizer_0/x.distcp').name
        ('RNG states', 'optimizers')
        >>> part_named('notes.txt') is None
        True
    """
    top = name.split("/", 1)[0]
    for part in PARTS:
        if any(_pattern_regex(files.pattern).match(top) for files in part.files):
            return part
    return None


def missing_files(folder: str | Path, layout: Layout, skip: tuple[str, ...] = (),
                  present: Iterable[str] | None = None) -> list[str]:
    """The declared files of a ``layout`` checkpoint that ``folder`` lacks (``skip`` aside).

    ``present``: the names at the top of the folder when known (a manifest's), else the
    folder is listed."""
    present = set(os.listdir(folder) if present is None else present)
    return [name for name in declared_files(layout) if name not in present and name not in skip]


def missing_message(missing: list[str], layout: Layout) -> str:
    """Name each missing file's part and writer, and what ``layout`` expects.

    Example:
        >>> missing_message(['scaler.pt'], Layout(scaler=True))  # doctest: +ELLIPSIS
        "scaler.pt (part 'loss scaler', written by Accelerate's save_state); a run with ..."
    """
    details = "; ".join(f"{name} (part '{part_of(name, layout).name}', written by "
                        f"{part_of(name, layout).writer.replace('`', '')})" for name in missing)
    return (f"{details}; a run with {layout.models} model(s), {layout.optimizers} "
            f"optimizer(s), {layout.schedulers} scheduler(s), "
            f"{'a' if layout.scaler else 'no'} loss scaler, {layout.world_size} process(es) "
            f"and engine {layout.engine!r} has {declared_files(layout)}")


def collect_state(loop: Any) -> dict[str, Any]:
    """``runner_state.json``'s content: every accelwrap part's keys, from the training loop."""
    state: dict[str, Any] = {}
    for part in PARTS:
        if part.collect is not None:
            state.update(zip(part.keys, part.collect(loop), strict=True))
    return state


def restore_state(loop: Any, state: Mapping[str, Any]) -> None:
    """Put every accelwrap part of ``state`` back into the training loop.

    Raises:
        CheckpointError: ``state`` lacks a key a part needs (the message names it).
    """
    for part in PARTS:
        if part.restore is None:
            continue
        try:
            part.restore(loop, state)
        except KeyError as err:
            source = getattr(loop.runner, "resume_from", None)
            raise CheckpointError(
                f"{STATE_FILE} of checkpoint {str(source)!r} has no key {err.args[0]!r} "
                f"(part '{part.name}': expected keys {list(part.keys)})") from err


def save_own_files(loop: Any, folder: Path) -> None:
    """Call the ``save`` hook of every part accelwrap writes into files of its own."""
    for part in PARTS:
        if part.save is not None and loop is not None:
            part.save(loop, folder)


def load_own_files(loop: Any, folder: Path) -> None:
    """Call the ``load`` hook of every part accelwrap writes into files of its own."""
    for part in PARTS:
        if part.load is not None and loop is not None:
            part.load(loop, folder)


def parts_table() -> str:
    """The README's checkpoint table: one row per part of :data:`PARTS`.

    Example:
        >>> parts_table().splitlines()[0]
        '| Part | Files | Written by | What it is for |'
    """
    rows = ["| Part | Files | Written by | What it is for |", "| --- | --- | --- | --- |"]
    for part in PARTS:
        if part.keys:
            files = f"`{STATE_FILE}`: " + ", ".join(f"`{key}`" for key in part.keys)
        else:
            files = "; ".join(files.shown() for files in part.files)
        rows.append(f"| {part.name} | {files} | {part.writer} | {part.purpose} |")
    return "\n".join(rows) + "\n"
