"""Counting ``on: updates`` schedulers in updates: the default ``end`` and epoch conversion.

An ``on: updates`` scheduler ticks once per applied update, so its ``begin``/``end`` and
every length it is given count updates. The builder's defaults are counted in iterations
(``max_iters``) or epochs (``convert_to_iter_based`` with ``epoch_length``); this module
turns them into updates with the wrapper's accumulation rule (MMEngine's): an update ends
every window of ``accumulative_counts`` iterations, and the last, shorter window of a run
whose length is not a multiple of it updates too. After ``i`` iterations of a run of
``N`` iterations, ``i // k`` updates were applied (``ceil(N / k)`` at ``i = N``).

Updates that the loss scaler, the non-finite policy or the spike rule skip cannot be
foreseen: a run that skips some ends before its schedule does.

Example:
    >>> counter = UpdateCount(accumulative_counts=4, run_iters=10)
    >>> [counter.position(i) for i in (0, 3, 4, 9, 10)]
    [0, 0, 1, 2, 3]
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from accelwrap.optim.scheduler.base import INF, epochs_to_iters

__all__ = ["UpdateCount", "accumulation_of", "run_length", "to_updates"]

#: Arguments that are lengths counted from ``begin`` (the others are positions).
_LENGTHS = ("T_max", "total_steps")


class UpdateCount:
    """How many updates a wrapper applies in a number of iterations.

    Args:
        accumulative_counts: The wrapper's iterations per update.
        run_iters: The run's length in iterations, when known (its last short window
            updates); None: no short window.
    """

    def __init__(self, accumulative_counts: int, run_iters: int | None) -> None:
        self.k = accumulative_counts
        self.run_iters = run_iters

    def position(self, iters: int) -> int:
        """Updates applied after ``iters`` iterations (``INF`` stays ``INF``)."""
        if iters == INF:
            return INF
        if self.run_iters is not None and iters >= self.run_iters:
            return math.ceil(iters / self.k)
        return iters // self.k


def accumulation_of(target: Any, where: str) -> int:
    """The accumulative counts of an ``on: updates`` scheduler's wrapper.

    Args:
        target: The scheduler's optimizer (an ``OptimWrapper``).
        where: The config path and class, for messages.

    Returns:
        ``target._accumulative_counts``.

    Raises:
        ValueError: The wrapper does not say how many iterations an update takes.
    """
    counts = getattr(target, "_accumulative_counts", None)
    if isinstance(counts, bool) or not isinstance(counts, int) or counts < 1:
        raise ValueError(
            f"{where}: on='updates' counts updates, but {type(target).__name__} has no "
            f"positive int _accumulative_counts (got {counts!r}), so the default end and "
            "convert_to_iter_based cannot be counted in updates; give begin/end (and the "
            "lengths) in updates with by_epoch=False")
    return counts


def run_length(max_iters: int | None, max_epochs: int | None, epoch_length: int | None,
               target: Any) -> int | None:
    """The run's length in iterations: ``max_iters``, else epochs x length, else the wrapper's."""
    if max_iters is not None:
        return max_iters
    if max_epochs is not None and epoch_length is not None:
        return max_epochs * epoch_length
    counts = getattr(target, "_max_counts", -1)
    return counts if isinstance(counts, int) and counts > 0 else None


def to_updates(cfg: dict, count_args: tuple[str, ...], epoch_length: Any, counter: UpdateCount,
               where: str) -> dict:
    """Convert an epoch-based ``convert_to_iter_based`` config to one counted in updates.

    Positions (``begin``, ``end``, ``milestones``) become the updates applied by the
    iteration they convert to; lengths from ``begin`` (``T_max``, ``total_steps``,
    ``periods``) the updates between their two ends. ``step_size`` becomes
    ``round(iterations / k)`` (at least 1), with a warning when that is not exact.

    Args:
        cfg: The config (``begin``/``end`` in epochs); not modified.
        count_args: The class's ``epoch_count_args``.
        epoch_length: Iterations per epoch.
        counter: The wrapper's update count.
        where: The config path and class, for messages.

    Returns:
        A config with ``by_epoch=False`` and no ``convert_to_iter_based``.

    Raises:
        ValueError: ``epoch_length`` is missing or not a positive integer.
    """
    if isinstance(epoch_length, bool) or not isinstance(epoch_length, int) or epoch_length < 1:
        raise ValueError(f"{where}: convert_to_iter_based=True needs epoch_length, a positive "
                         f"integer (iterations per epoch), got {epoch_length!r}")
    out = {k: v for k, v in cfg.items() if k != "convert_to_iter_based"}
    owner = where.rsplit(" ", 1)[-1]

    def iters(value: Any, name: str) -> Any:
        return epochs_to_iters(value, epoch_length, name, owner)

    begin_i = iters(cfg.get("begin", 0), "begin")
    for name in ("begin", "end", *count_args):
        value = cfg.get(name)
        if value is None:
            continue
        if name in ("begin", "end", "milestones"):
            converted = iters(value, name)
            out[name] = ([counter.position(v) for v in converted]
                         if isinstance(converted, list) else counter.position(converted))
        elif name in _LENGTHS:
            out[name] = _length(counter, begin_i, [iters(value, name)])[0]
        elif name == "periods":
            out[name] = _length(counter, begin_i, iters(value, name))
        else:  # step_size: one length repeated, exact only for multiples of k
            steps = iters(value, name)
            out[name] = max(1, round(steps / counter.k))
            if steps % counter.k:
                warnings.warn(f"{where}: {name}={value} epochs is {steps} iterations, not a "
                              f"multiple of accumulative_counts={counter.k}; on='updates' uses "
                              f"{out[name]} updates", UserWarning, stacklevel=4)
    out["by_epoch"] = False
    return out


def _length(counter: UpdateCount, begin: int, lengths: list[int]) -> list[int]:
    """Consecutive lengths (iterations, starting at ``begin``) as update counts."""
    result, start = [], begin
    for length in lengths:
        stop = start + length
        result.append(max(1, counter.position(stop) - counter.position(start)))
        start = stop
    return result
