"""The 1cycle policy: up from ``eta_max / div_factor`` to ``eta_max``, then down to the minimum.

Values are absolute (not chained): ``a = 0`` and ``b`` is the value of every group.
As in torch and MMEngine, a loop of ``total_steps`` iterations that steps the scheduler
after each one works (the value after the last step continues the last phase's curve, as
theirs does, and is never trained with); stepping once more raises, as in MMEngine.

Example:
    >>> from accelwrap.optim.scheduler.onecycle import OneCycle
    >>> cycle = OneCycle([0.004], span=10, eta_max=0.1)
    >>> round(cycle.coefficients(0)[1][0], 6), round(cycle.coefficients(2)[1][0], 6)
    (0.004, 0.1)
"""

from __future__ import annotations

import math
from typing import Any

from accelwrap.errors import suggest
from accelwrap.optim.scheduler.families import Coefficients, Family, integer, number


def anneal_cos(start: float, stop: float, pct: float) -> float:
    """Cosine from ``start`` (pct 0) to ``stop`` (pct 1)."""
    return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1)


def anneal_linear(start: float, stop: float, pct: float) -> float:
    """Straight line from ``start`` (pct 0) to ``stop`` (pct 1)."""
    return (stop - start) * pct + start


ANNEALERS = {"cos": anneal_cos, "linear": anneal_linear}


def per_group(name: str, value: Any, count: int) -> list[float]:
    """``value`` for each of ``count`` groups (a scalar is repeated, a list must match)."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{name} has {len(value)} values but the optimizer has {count} "
                             f"param groups: {list(value)}")
        return [number(name, v) for v in value]
    return [number(name, value)] * count


class OneCycle(Family):
    """Set the value by the 1cycle policy (Super-Convergence, Smith & Topin).

    It rises from ``eta_max / div_factor`` to ``eta_max`` over ``pct_start`` of the cycle,
    then falls to ``eta_max / div_factor / final_div_factor`` (or, with ``three_phase``,
    falls back first and then to the minimum). Values are absolute, not chained; the
    scheduler may be stepped ``total_steps`` times after it is built, not more.

    Args:
        eta_max: Peak value: one number or one per param group. Defaults to 0.
        total_steps: Steps in the cycle. Defaults to ``end - begin``.
        pct_start: Fraction of the cycle spent rising, in [0, 1]. Defaults to 0.3.
        anneal_strategy: ``'cos'`` or ``'linear'``. Defaults to ``'cos'``.
        div_factor: The start value is ``eta_max / div_factor``. Defaults to 25.
        final_div_factor: The minimum is the start value / ``final_div_factor``.
            Defaults to 1e4.
        three_phase: Use three phases (rise, fall back, anneal). Defaults to False.
    """

    epoch_counts = ("total_steps",)
    example = "eta_max=0.1, total_steps=10, end=10"
    published = ("eta_max", "total_steps", "pct_start", "anneal_strategy", "div_factor",
                 "final_div_factor", "three_phase")

    def __init__(self, bases: list[float], span: int, *, eta_max: float | list[float] = 0,
                 total_steps: float | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False) -> None:
        super().__init__(bases, span)
        self.total = span if total_steps is None else integer("total_steps", total_steps)
        self.total_steps = self.total
        pct = number("pct_start", pct_start, 0.0, 1.0)
        self.eta_max, self.pct_start, self.three_phase = eta_max, pct_start, three_phase
        self.div_factor, self.final_div_factor = div_factor, final_div_factor
        self.anneal_strategy = anneal_strategy
        if anneal_strategy not in ANNEALERS:
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}; "
                             f"{suggest(str(anneal_strategy), ANNEALERS)}")
        self.anneal = ANNEALERS[anneal_strategy]
        peaks = per_group("eta_max", eta_max, len(bases))
        starts = [peak / number("div_factor", div_factor, 0.0, low_open=True) for peak in peaks]
        lows = [s / number("final_div_factor", final_div_factor, 0.0, low_open=True)
                for s in starts]
        rise_end = float(pct * self.total) - 1
        if three_phase:
            self.phases = [(rise_end, starts, peaks),
                           (float(2 * pct * self.total) - 2, peaks, starts),
                           (self.total - 1, starts, lows)]
        else:
            self.phases = [(rise_end, starts, peaks), (self.total - 1, peaks, lows)]
        if rise_end == 0:
            raise ValueError(f"pct_start * total_steps = {pct} * {self.total} = 1 leaves the "
                             "rising phase no length; choose another pct_start")

    @classmethod
    def initial_values(cls, group_count: int, eta_max: Any = 0, div_factor: float = 25.0,
                       **options: Any) -> list[float]:
        """``eta_max / div_factor`` per group: OneCycle's ``initial_<param>`` (as in MMEngine)."""
        divisor = number("div_factor", div_factor, 0.0, low_open=True)
        return [peak / divisor for peak in per_group("eta_max", eta_max, group_count)]

    def coefficients(self, t: int) -> Coefficients:
        if t > self.total:
            raise ValueError(f"Tried to step {t + 1} times. The specified number of total steps "
                             f"is {self.total}; raise total_steps or end the scheduler earlier "
                             "(end=begin+total_steps)")
        start_step = 0.0
        for end_step, starts, stops in self.phases[:-1]:
            if t <= end_step:
                break
            start_step = end_step
        else:
            end_step, starts, stops = self.phases[-1]
        pct = (t - start_step) / (end_step - start_step)
        return 0.0, [self.anneal(s, e, pct) for s, e in zip(starts, stops)]
