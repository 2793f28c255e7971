"""What each accelwrap part of a checkpoint stores in ``runner_state.json``, and how it is put back.

The ``collect``/``restore`` functions of :data:`~accelwrap.runner.checkpoint_parts.PARTS`
(and the ``save``/``load`` hooks of EMA): each takes the training loop. Declared, with
their keys and purposes, in :mod:`accelwrap.runner.checkpoint_parts`.

Example:
    >>> jsonable([1, 2.0, 'a', None]), jsonable({'a': 1})
    (True, False)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accelwrap.optim.optimizer.optimizer_wrapper_dict import named_members
from accelwrap.optim.scheduler.settings import scheduler_settings, settings_changes
from accelwrap.runner.checkpoint_layout import STATE_FILE
from accelwrap.runner.data_position import position_state, restore_position
from accelwrap.runner.log_output import HELD_KEY, optim_scalars
from accelwrap.runner.manifest import read_sealed

__all__ = ["STATE_FORMAT", "data_position", "held_scalars", "load_ema", "progress",
           "report_scheduler_edits", "restore_before_load", "restore_best",
           "restore_data_position", "restore_held_scalars", "restore_progress",
           "restore_wrapper_counters", "run_scheduler_settings", "save_ema", "wrapper_counters"]

logger = logging.getLogger("accelwrap")

#: The version of ``runner_state.json``'s layout.
STATE_FORMAT = 1


def progress(loop: Any) -> tuple:
    runner = loop.runner
    return (STATE_FORMAT, loop.epoch, loop.iter, runner.max_iters,
            runner.accelerator.num_processes)


def restore_progress(loop: Any, state: Mapping[str, Any]) -> None:
    loop.epoch, loop.iter = int(state["epoch"]), int(state["iter"])
    loop._last_saved = loop.iter


def data_position(loop: Any) -> tuple:
    return position_state(loop)


def restore_data_position(loop: Any, state: Mapping[str, Any]) -> None:
    # Another world size or batch size continues the epoch at its first unseen sample.
    restore_position(loop, state, flat_schedulers(loop))


def wrapper_counters(loop: Any) -> tuple:
    wrappers = {}
    for name, wrapper in named_members(loop.runner.optim_wrapper).items():
        base = wrapper.base_param_settings
        wrappers[name] = {
            "inner_count": wrapper.inner_count,
            "skipped_steps": getattr(wrapper, "skipped_steps", 0),
            "base_param_settings": None if base is None else
            {k: v for k, v in base.items() if k != "params" and jsonable(v)},
        }
        if hasattr(wrapper, "progress_state"):  # update counters, the spike window
            wrappers[name]["progress"] = wrapper.progress_state()
    return (wrappers,)


def restore_before_load(loop: Any, folder: str | Path) -> None:
    """Put back, before ``load_state``, what the schedulers' state loading must see.

    The ``OptimWrapper``'s ``base_param_settings`` group is no torch param group, so
    ``optimizer.bin`` lacks it; a scheduler recomputes the value of every group when its
    state loads (an edited schedule), so that group must already hold the saved values.

    Args:
        loop: The training loop.
        folder: The checkpoint folder.
    """
    path = Path(folder) / STATE_FILE
    state = read_sealed(path) if path.is_file() else {}
    for name, wrapper in named_members(loop.runner.optim_wrapper).items():
        saved = state.get("wrappers", {}).get(name, {})
        if saved.get("base_param_settings") and wrapper.base_param_settings is not None:
            wrapper.base_param_settings.update(saved["base_param_settings"])


def restore_wrapper_counters(loop: Any, state: Mapping[str, Any]) -> None:
    for name, wrapper in named_members(loop.runner.optim_wrapper).items():
        saved = state.get("wrappers", {}).get(name, {})
        if "skipped_steps" in saved and hasattr(wrapper, "skipped_steps"):
            wrapper.skipped_steps = saved["skipped_steps"]
        if "progress" in saved and hasattr(wrapper, "load_progress_state"):
            wrapper.load_progress_state(saved["progress"])


def flat_schedulers(loop: Any) -> list[Any]:
    schedulers = getattr(loop.runner, "param_schedulers", None) or []
    groups = schedulers.values() if isinstance(schedulers, Mapping) else [schedulers]
    return [s for group in groups for s in group]


def run_scheduler_settings(loop: Any) -> tuple:
    return ([scheduler_settings(s) for s in flat_schedulers(loop)],)


def report_scheduler_edits(loop: Any, state: Mapping[str, Any]) -> None:
    saved = state.get("schedulers")
    if saved is None:  # a checkpoint from before settings were recorded
        return
    current = run_scheduler_settings(loop)[0]
    old_length, new_length = state.get("epoch_length"), loop.runner.epoch_length
    if old_length and old_length != new_length:  # another layout: not an edit by the user
        kinds = getattr(loop.runner, "scheduler_kinds", ())
        saved = [_same_epochs(old, new, old_length, new_length) if kind == "converted" else old
                 for old, new, kind in zip(saved, current, kinds)] + saved[len(kinds):]
    changes = settings_changes(saved, current)
    if changes:
        logger.warning("resuming with an edited schedule; the run follows the new settings "
                       "from this iteration on:\n  %s", "\n  ".join(changes))


def _same_epochs(old: Mapping[str, Any], new: Mapping[str, Any], old_length: int,
                 new_length: int) -> dict[str, Any]:
    """``old`` settings of a by-epoch scheduler converted to iterations, with each value
    that is the same number of epochs as ``new``'s (within an iteration of either layout:
    the conversion truncates) replaced by ``new``'s: what a layout change alone moves."""
    slack = 1.0 / min(old_length, new_length)

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        numbers = (int, float)
        return (isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool)
                and abs(a / old_length - b / new_length) <= slack)

    return {key: new[key] if key in new and same(value, new[key]) else value
            for key, value in old.items()}


def jsonable(value: Any) -> bool:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return True
    return isinstance(value, (list, tuple)) and all(jsonable(v) for v in value)


def save_ema(loop: Any, folder: Path) -> None:
    ema = getattr(loop.runner, "ema", None)
    if ema is not None and loop.runner.accelerator.is_main_process:
        ema.save(folder)  # the same weights on every process


def load_ema(loop: Any, folder: Path) -> None:
    ema = getattr(loop.runner, "ema", None)
    if ema is not None:
        ema.load(folder)


def restore_best(loop: Any, state: Mapping[str, Any]) -> None:
    if loop.best is not None:
        loop.best.restore(state.get("best"))  # absent in checkpoints from before save_best


def held_scalars(loop: Any) -> tuple:
    runner = loop.runner
    return (optim_scalars(runner.optim_wrapper, runner.logger_cfg.per_group),)


def restore_held_scalars(loop: Any, state: Mapping[str, Any]) -> None:
    loop.held = dict(state.get(HELD_KEY) or {})  # absent in checkpoints from before it
