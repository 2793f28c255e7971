"""``ChainableScheduler``: closed-form values that compose exactly like MMEngine's chained form.

Every family (see :mod:`accelwrap.optim.scheduler.families`) describes its value at step
``t`` as an affine map of an *anchor* — the value it took over::

    value(t) = a(t) * anchor + b(t)

(``a`` is a float shared by all groups, ``b`` one float per group). While nobody else
touched the value since this scheduler last wrote it, the value is computed from the step
index in closed form: no drift, and a resumed run with edited arguments lands on the
edited curve. When another scheduler (or the user) changed it, the scheduler re-anchors
— ``anchor = (seen - b(t-1)) / a(t-1)`` — which is algebraically MMEngine's recursive
update (``seen * a(t) / a(t-1)`` for multiplicative families, ``eta_min + (seen - eta_min)
* ratio`` for cosine and poly): overlapping schedulers multiply exactly as in MMEngine.
A family may force a value at some steps (a cosine restart, OneCycle's absolute values).
"""

from __future__ import annotations

import math
from typing import Any

from accelwrap.optim.scheduler.base import INF, ParamScheduler


class ChainableScheduler(ParamScheduler):
    """A scheduler whose math comes from a family class (``family`` class attribute).

    The classes made from a family (``CosineAnnealingLR`` ...) call this with the family's
    own arguments in ``options``; the values are the family's closed form composed as
    described in the module docstring.

    Args:
        optimizer: A torch optimizer or an ``OptimWrapper``.
        param_name: The param-group key to schedule.
        options: The family's arguments (e.g. ``{'T_max': 10, 'eta_min': 0.0}``).
        begin, end, last_step, by_epoch, verbose: See :class:`ParamScheduler`.

    Raises:
        ValueError: A family argument is out of range (the message names it).
        TypeError: A family argument has the wrong type.
    """

    family: type = None  # set by make_scheduler
    _state_keys = ParamScheduler._state_keys + ("_anchor", "_written")

    def __init__(self, optimizer: Any, param_name: str, options: dict[str, Any], begin: int = 0,
                 end: int = INF, last_step: int = -1, by_epoch: bool = True,
                 verbose: bool = False) -> None:
        self._options = dict(options)
        self._anchor: list[float] | None = None
        self._written: list[float] | None = None
        self._cache: list[tuple[int, Any]] = []
        super().__init__(optimizer, param_name, begin=begin, end=end, last_step=last_step,
                         by_epoch=by_epoch, verbose=verbose)

    def _initial_values(self) -> list[float] | None:
        count = len(self.optimizer.param_groups)
        return self._call_family(self.family.initial_values, count, **self._options)

    def _prepare(self) -> None:
        self.schedule = self._call_family(self.family, bases=list(self.base_values),
                                          span=self.end - self.begin, **self._options)

    def _call_family(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{type(self).__name__}: {exc}") from None

    def _coefficients(self, t: int) -> tuple[float, list[float]] | None:
        for step, coefficients in self._cache:
            if step == t:
                return coefficients
        coefficients = self._call_family(self.schedule.coefficients, t)
        self._cache = [*self._cache[-1:], (t, coefficients)]
        return coefficients

    def _get_value(self) -> list[float] | None:
        t = self.last_step
        name = self.param_name
        groups = self.optimizer.param_groups
        seen = [group[name] for group in groups]
        current = self._coefficients(t)
        if current is None:  # the family holds the value (e.g. after the last restart)
            return None
        a, b = current
        forced = self.schedule.forced(t, seen)
        if forced is not None:
            self._anchor = [(v - bi) / a for v, bi in zip(forced, b)]
            values = forced
        else:
            self._anchor = self._anchors(t, seen)
            values = [a * anchor + bi for anchor, bi in zip(self._anchor, b)]
        self._written = list(values)
        return values

    def _anchors(self, t: int, seen: list[float]) -> list[float]:
        """The anchor of every group: kept where the value is ours, re-derived elsewhere."""
        anchors, written = self._anchor, self._written
        if t == 0:
            return list(seen)
        if written is not None and seen == written:
            return anchors
        previous = self._coefficients(t - 1)
        result = []
        for index, value in enumerate(seen):
            if written is not None and value == written[index]:
                result.append(anchors[index])
            elif previous is not None and previous[0] != 0:
                result.append((value - previous[1][index]) / previous[0])
            else:
                result.append(anchors[index] if anchors is not None else value)
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the progress saved by :meth:`state_dict` (see :class:`ParamScheduler`).

        The value of the current step is then recomputed with this scheduler's own
        arguments, so a resumed run whose schedule was edited (``T_max``, ``end``, ...)
        is at the edited schedule's value from its first iteration on, exactly where a
        fresh run of the edited schedule would be.
        """
        self._cache = []
        super().load_state_dict(state_dict)

    def _derived_state(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """MMEngine keeps no anchor: the next step re-anchors on the value it finds.

        That is MMEngine's own recursive rule (see the module docstring), so the steps
        after loading an MMEngine state give MMEngine's values.
        """
        return {"_anchor": None, "_written": None}

    def _resume_value(self) -> None:
        groups = self.optimizer.param_groups
        # Only a value this scheduler wrote last is redone: one that another (overlapping or
        # later) scheduler wrote over is that one's to redo when it is loaded.
        seen = [group[self.param_name] for group in groups]
        if self.last_step < 0 or seen != self._written:
            return
        current = self._coefficients(self.last_step)
        if current is None or all(math.isclose(current[0] * anchor + b, value, rel_tol=1e-12)
                                  for anchor, b, value in zip(self._anchor, current[1], seen)):
            return  # the schedule is unchanged at this step (or holds the value)
        anchors = self.schedule.resume_anchors(self.last_step)
        if anchors is not None:
            self._anchor = anchors
        values = self._get_value()
        if values is not None:
            self._write(groups, values)
        self._last_value = [group[self.param_name] for group in groups]
