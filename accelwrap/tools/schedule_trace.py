"""What ``accelwrap schedule`` computes: every scheduled value of a run, and every window.

Filled by :func:`accelwrap.tools.schedule.simulate`, drawn by
:func:`accelwrap.tools.schedule_plot.plot`.

Example:
    >>> Window(member='', name='MultiStepLR', param_name='lr', begin=0, end=10).held
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Trace", "Window"]


@dataclass(frozen=True)
class Window:
    """Where one scheduler acts, in iterations (``end`` exclusive, clamped to the run).

    Attributes:
        member: ``OptimWrapperDict`` member name (``''`` for a single wrapper).
        name: The scheduler's class name.
        param_name: The param-group key it changes (``lr``, ``momentum``, ...).
        begin: First iteration it acts on.
        end: First iteration it no longer acts on.
        marks: Iterations where a milestone / step of the scheduler takes effect.
        held: True when the preview cannot know its values (plateau schedulers).
    """

    member: str
    name: str
    param_name: str
    begin: int
    end: int
    marks: tuple[int, ...] = ()
    held: bool = False


@dataclass
class Trace:
    """Scheduled values of a whole run.

    Attributes:
        epoch_length: Iterations per epoch.
        max_iters: Iterations of the run.
        members: ``OptimWrapperDict`` member names (``['']`` for a single wrapper).
        columns: ``scalars.jsonl``-style key -> one value per iteration.
        windows: Every scheduler's window.
    """

    epoch_length: int
    max_iters: int
    members: list[str] = field(default_factory=lambda: [""])
    columns: dict[str, list[float]] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)
