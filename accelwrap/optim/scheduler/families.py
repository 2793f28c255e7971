"""The math and the prose of every chainable schedule family, each written once.

A family is built with the base value of every param group (``bases``), the length of the
scheduler's window (``span = end - begin``) and its own arguments. It answers, for the
step ``t`` counted from ``begin``:

* :meth:`Family.coefficients` -- ``(a, b)`` with ``value = a * anchor + b[group]``, or
  ``None`` to leave the value alone;
* :meth:`Family.forced` -- values that replace the affine form at special steps (a cosine
  restart), or ``None``.

A family's docstring is the prose of its schedulers and its keyword-only ``__init__``
arguments (names, types, defaults) are their arguments:
:func:`~accelwrap.optim.scheduler.factory.make_scheduler` turns a family into its LR,
Momentum and Param classes (declared in ``lr_scheduler``, ``momentum_scheduler`` and
``param_scheduler``), and
:mod:`accelwrap.optim.scheduler.chainable` turns the closed forms into MMEngine's chained
numbers.

Example:
    >>> from accelwrap.optim.scheduler.families import Linear
    >>> Linear([1.0], span=5, start_factor=0.5).coefficients(2)
    (0.75, [0.0])
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from typing import Any

from accelwrap.errors import ValueAssertionError

Coefficients = tuple[float, list[float]]


def integer(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise naming ``name`` unless it is an integer >= minimum."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def sequence(name: str, value: Any) -> list:
    """Return ``value`` as a list, or raise naming ``name`` unless it is a list or tuple."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list, got {value!r}")
    return list(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> float:
    """Return ``value`` if it is a number in the range, else raise a message naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
    return value


def eta_mins(bases: list[float], eta_min: Any, eta_min_ratio: Any) -> list[float]:
    """Per-group minimum: ``eta_min``, or ``base * eta_min_ratio`` (0 when neither is given).

    Giving both is refused, as in MMEngine (an ``AssertionError`` there), even
    ``eta_min=0``: the two would contradict each other.
    """
    if eta_min is not None and eta_min_ratio is not None:
        raise ValueAssertionError(f"Either `eta_min` or `eta_min_ratio` should be specified, not "
                                  f"both: got eta_min={eta_min!r}, eta_min_ratio={eta_min_ratio!r}")
    if eta_min_ratio is not None:
        return [base * number("eta_min_ratio", eta_min_ratio) for base in bases]
    return [number("eta_min", 0.0 if eta_min is None else eta_min)] * len(bases)


def half_cosine(t: float, period: float) -> float:
    """``(1 + cos(pi * t / period)) / 2``: 1 at ``t = 0``, 0 at ``t = period``."""
    return (1 + math.cos(math.pi * t / period)) / 2


class Family:
    """Base class: a closed-form schedule of an anchor value.

    A subclass declares its schedulers' arguments as keyword-only ``__init__`` parameters
    with type hints and defaults, documents them in its docstring's ``Args`` (whose summary
    speaks of "the value": the learning rate, the momentum or ``param_name``), and may set
    the class attributes below.

    Args:
        bases: ``initial_<param>`` of every param group.
        span: ``end - begin`` of the scheduler.
    """

    #: MMEngine's positional order of the arguments after ``optimizer`` (and ``param_name``)
    #: where it is not "the family's arguments, then begin, end, last_step, by_epoch, verbose".
    order: tuple[str, ...] | None = None
    #: The family's arguments that count epochs (converted by ``convert_to_iter_based``).
    epoch_counts: tuple[str, ...] = ()
    #: The family's arguments in the schedulers' docstring examples.
    example: str = ""
    #: The statement that steps the scheduler in those examples.
    example_step: str = "sched.step()"
    #: Attributes the schedulers expose under the same name (MMEngine's, with its values).
    published: tuple[str, ...] = ()

    def __init__(self, bases: list[float], span: int) -> None:
        self.bases = bases
        self.span = span
        self.zeros = [0.0] * len(bases)

    @classmethod
    def initial_values(cls, group_count: int, **options: Any) -> list[float] | None:
        """Values the family forces into ``initial_<param>`` before any step (OneCycle)."""
        return None

    def coefficients(self, t: int) -> Coefficients | None:
        """``(a, b)`` such that the value at step ``t`` is ``a * anchor + b[group]``."""
        return self.multiplier(t), self.zeros

    def multiplier(self, t: int) -> float:
        """The multiplicative factor at step ``t`` (multiplicative families)."""
        raise NotImplementedError

    def forced(self, t: int, seen: list[float]) -> list[float] | None:
        """Values that replace the affine form at step ``t``; None almost always."""
        return None

    def resume_anchors(self, t: int) -> list[float] | None:
        """Anchors to use when a run resumes at step ``t``; None keeps the saved ones.

        A family whose anchor depends on where in the schedule the step is (a cosine
        restart's weight) gives the anchor of *this* schedule, so an edited schedule does
        not inherit the saved run's.
        """
        return None


class Constant(Family):
    """Multiply the value by a constant ``factor`` until the last step of the window.

    Args:
        factor: Multiplier in (0, 1] applied until ``end - 1``. Defaults to 1/3 (0 is
            refused: restoring the value would divide by zero).
    """

    example = "factor=0.5, end=4"
    published = ("factor", "total_iters")

    def __init__(self, bases: list[float], span: int, *, factor: float = 1.0 / 3) -> None:
        super().__init__(bases, span)
        # factor=0 would divide by zero when the window ends (MMEngine multiplies by 1/factor).
        self.factor = number("factor", factor, 0.0, 1.0, low_open=True)
        self.total_iters = span - 1

    def multiplier(self, t: int) -> float:
        return self.factor if t == 0 or t < self.total_iters else 1.0


class Exponential(Family):
    """Multiply the value by ``gamma`` at every step.

    Args:
        gamma: Multiplicative decay per step (>= 0).
    """

    example = "gamma=0.9"
    published = ("gamma",)

    def __init__(self, bases: list[float], span: int, *, gamma: float) -> None:
        super().__init__(bases, span)
        self.gamma = number("gamma", gamma, 0.0)

    def multiplier(self, t: int) -> float:
        return self.gamma ** t


class Linear(Family):
    """Scale the value by a factor moving linearly from ``start_factor`` to ``end_factor``.

    A warm-up when the factors are below 1. The factor at step ``t`` is ``start_factor +
    (end_factor - start_factor) * t / (end - begin - 1)``.

    Args:
        start_factor: Factor at the first step, in (0, 1]. Defaults to 1/3 (0 is refused:
            the chained update would divide by zero; use e.g. 1e-3).
        end_factor: Factor at the last step of the window, in [0, 1]. Defaults to 1.
    """

    example = "start_factor=0.1, end=5"
    published = ("start_factor", "end_factor", "total_iters")

    def __init__(self, bases: list[float], span: int, *, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0) -> None:
        super().__init__(bases, span)
        # start_factor=0 would divide by zero in MMEngine's chained update.
        self.start_factor = number("start_factor", start_factor, 0.0, 1.0, low_open=True)
        self.end_factor = number("end_factor", end_factor, 0.0, 1.0)
        self.total_iters = span - 1

    def multiplier(self, t: int) -> float:
        start = self.start_factor
        if t == 0:
            return start
        return start + (self.end_factor - start) * t / self.total_iters


class Step(Family):
    """Multiply the value by ``gamma`` every ``step_size`` steps.

    Args:
        step_size: Steps between decays (a positive integer once converted to iterations).
        gamma: Multiplicative decay. Defaults to 0.1.
    """

    epoch_counts = ("step_size",)
    example = "step_size=3, gamma=0.5"
    published = ("step_size", "gamma")

    def __init__(self, bases: list[float], span: int, *, step_size: float,
                 gamma: float = 0.1) -> None:
        super().__init__(bases, span)
        self.step_size = integer("step_size", step_size)
        self.gamma = number("gamma", gamma, 0.0)

    def multiplier(self, t: int) -> float:
        return self.gamma ** (t // self.step_size)


class MultiStep(Family):
    """Multiply the value by ``gamma`` at every milestone.

    Args:
        milestones: Step indices (counted from ``begin``), in any order; a milestone given
            ``n`` times multiplies by ``gamma ** n`` there (MMEngine's and torch's
            ``Counter``), e.g. epochs that ``convert_to_iter_based`` rounds to one iteration.
        gamma: Multiplicative decay at each milestone. Defaults to 0.1.
    """

    order = ("milestones", "gamma", "last_step", "begin", "end", "by_epoch", "verbose")
    epoch_counts = ("milestones",)
    example = "milestones=[8, 11], gamma=0.1"
    published = ("milestones", "gamma")

    def __init__(self, bases: list[float], span: int, *, milestones: list[float],
                 gamma: float = 0.1) -> None:
        super().__init__(bases, span)
        values = [integer("each milestone", m, 0) for m in sequence("milestones", milestones)]
        self.sorted_milestones = sorted(values)
        self.milestones = Counter(values)  # MMEngine's (and torch's) type
        self.gamma = number("gamma", gamma, 0.0)

    def multiplier(self, t: int) -> float:
        return self.gamma ** bisect.bisect_right(self.sorted_milestones, t)


class Poly(Family):
    """Decay the value polynomially to ``eta_min`` over the window.

    The value at step ``t`` is ``eta_min + (v0 - eta_min) * (1 - t / (end - begin - 1)) **
    power``, where ``v0`` is the value the scheduler took over.

    Args:
        eta_min: Value at the last step. Defaults to 0.
        power: Exponent of the polynomial. Defaults to 1.
    """

    example = "eta_min=0.0, power=2.0, end=10"
    published = ("eta_min", "power", "total_iters")

    def __init__(self, bases: list[float], span: int, *, eta_min: float | list[float] | None = 0,
                 power: float = 1.0) -> None:
        super().__init__(bases, span)
        self.eta_min = number("eta_min", eta_min)
        self.power = number("power", power)
        self.total_iters = span - 1

    def coefficients(self, t: int) -> Coefficients:
        if t == 0:
            return 1.0, self.zeros
        total = self.total_iters
        a = ((total - t) / total) ** self.power
        return a, [self.eta_min * (1 - a)] * len(self.bases)


class CosineAnnealing(Family):
    """Anneal the value along half a cosine from its current value to ``eta_min``.

    The value at step ``t`` of the window is ``eta_min + (v0 - eta_min) * (1 + cos(pi * t /
    T_max)) / 2``, where ``v0`` is the value the scheduler took over (SGDR without
    restarts). Past ``T_max`` the cosine climbs back, as in MMEngine.

    Args:
        T_max: Half-period in steps (positive). Defaults to ``end - begin``.
        eta_min: Minimum value. Defaults to 0 when ``eta_min_ratio`` is not given.
        eta_min_ratio: The minimum as a fraction of each group's initial value; give either
            this or ``eta_min``. Defaults to None.
    """

    order = ("T_max", "eta_min", "begin", "end", "last_step", "by_epoch", "verbose",
             "eta_min_ratio")
    epoch_counts = ("T_max",)
    example = "T_max=10, eta_min=1e-4, end=10"
    published = ("T_max", "eta_min", "eta_min_ratio")

    def __init__(self, bases: list[float], span: int, *, T_max: float | None = None,
                 eta_min: float | list[float] | None = None,
                 eta_min_ratio: float | None = None) -> None:
        super().__init__(bases, span)
        if T_max is None:
            T_max = span
        self.T_max = self.period = number("T_max", T_max, 0.0, low_open=True)
        if eta_min is None and eta_min_ratio is None:
            eta_min = 0.0  # MMEngine's default, kept for backward compatibility there
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio
        self.eta_mins = eta_mins(bases, eta_min, eta_min_ratio)

    def coefficients(self, t: int) -> Coefficients:
        a = half_cosine(t, self.period)
        return a, [m * (1 - a) for m in self.eta_mins]

    def forced(self, t: int, seen: list[float]) -> list[float] | None:
        # One step past a trough the closed form cannot be re-anchored (a == 0 there);
        # MMEngine climbs back towards the *base* value, and so does this.
        period = self.period
        if t == 0 or (t - 1 - period) % (2 * period) != 0:
            return None
        rise = (1 - math.cos(math.pi / period)) / 2
        return [v + (base - m) * rise for v, base, m in zip(seen, self.bases, self.eta_mins)]


class CosineRestart(Family):
    """Anneal the value along a cosine, restarted at the start of every period.

    Period ``i`` starts from ``initial value * restart_weights[i]`` and anneals to
    ``eta_min``; after the last period the value is held.

    Args:
        periods: Length of every cosine period (positive integers once converted).
        restart_weights: Multiplier of the initial value at each restart, one per period.
            Defaults to ``(1,)``.
        eta_min: Minimum value. Defaults to 0 when ``eta_min_ratio`` is not given (MMEngine
            requires one of the two).
        eta_min_ratio: The minimum as a fraction of each group's initial value; give either
            this or ``eta_min``. Defaults to None.
    """

    epoch_counts = ("periods",)
    example = "periods=[5, 5], restart_weights=[1, 0.5], eta_min=0.0"
    published = ("periods", "restart_weights", "eta_min", "eta_min_ratio", "cumulative_periods")

    def __init__(self, bases: list[float], span: int, *, periods: list[float],
                 restart_weights: list[float] = (1,), eta_min: float | list[float] | None = None,
                 eta_min_ratio: float | None = None) -> None:
        super().__init__(bases, span)
        self.periods = [integer("each period", p) for p in sequence("periods", periods)]
        weights = sequence("restart_weights", restart_weights)
        self.weights = [number("each restart weight", w, 0.0) for w in weights]
        if not self.periods or len(self.periods) != len(self.weights):
            raise ValueAssertionError(
                f"periods and restart_weights should have the same length (and not be empty), "
                f"got periods={list(periods)}, restart_weights={list(restart_weights)}")
        self.restart_weights = restart_weights
        self.ends = self.cumulative_periods = [sum(self.periods[:i + 1])
                                               for i in range(len(self.periods))]
        self.eta_min, self.eta_min_ratio = eta_min, eta_min_ratio
        self.eta_mins = eta_mins(bases, eta_min, eta_min_ratio)

    def _locate(self, t: int) -> tuple[int, int] | None:
        index = bisect.bisect_right(self.ends, t)
        if index == len(self.ends):
            return None
        start = self.ends[index - 1] if index else 0
        return index, t - start

    def coefficients(self, t: int) -> Coefficients | None:
        where = self._locate(t)
        if where is None:
            return None
        a = half_cosine(where[1], self.periods[where[0]])
        return a, [m * (1 - a) for m in self.eta_mins]

    def forced(self, t: int, seen: list[float]) -> list[float] | None:
        where = self._locate(t)
        if where is None or where[1] != 0:
            return None
        return [base * self.weights[where[0]] for base in self.bases]

    def resume_anchors(self, t: int) -> list[float] | None:
        where = self._locate(t)
        if where is None:
            return None
        return [base * self.weights[where[0]] for base in self.bases]
