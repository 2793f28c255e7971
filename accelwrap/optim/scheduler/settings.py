"""A scheduler's settings as plain data, and what changed between two runs' settings.

:func:`scheduler_settings` describes a scheduler's configuration (class, key, window and
the family's arguments under MMEngine's attribute names) in JSON-safe values; the runner
stores them next to a checkpoint (they are not in the scheduler's state dict, which
holds progress only) and :func:`settings_changes` lists what a resumed run edited.

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler import CosineAnnealingLR
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> old = [scheduler_settings(CosineAnnealingLR(opt, T_max=10, end=10))]
    >>> new = [scheduler_settings(CosineAnnealingLR(opt, T_max=20, end=20))]
    >>> settings_changes(old, new)
    ['param_scheduler[0] CosineAnnealingLR: end 10 -> 20, T_max 10 -> 20']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

WINDOW = ("type", "param_name", "begin", "end", "by_epoch")


def _plain(value: Any) -> Any:
    if isinstance(value, Counter):
        return sorted(value.elements())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return repr(value)


def scheduler_settings(scheduler: Any) -> dict[str, Any]:
    """The configuration of ``scheduler`` as JSON-safe values.

    Args:
        scheduler: An accelwrap scheduler.

    Returns:
        ``type``, ``param_name``, ``begin``, ``end``, ``by_epoch`` and every name of its
        ``setting_names`` (e.g. ``T_max``, ``milestones``).
    """
    out = {"type": type(scheduler).__name__}
    names = (*WINDOW[1:], *getattr(scheduler, "setting_names", ()))
    out.update({name: _plain(getattr(scheduler, name, None)) for name in names})
    return out


def settings_changes(saved: Sequence[Mapping[str, Any]],
                     current: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per scheduler whose settings differ (``old -> new``), or whose list changed.

    Args:
        saved: The settings stored with the checkpoint, in build order.
        current: This run's, in build order.

    Returns:
        The differences; empty when the schedule is unchanged.
    """
    lines = []
    for index in range(max(len(saved), len(current))):
        old = saved[index] if index < len(saved) else None
        new = current[index] if index < len(current) else None
        if old is None or new is None:
            lines.append(f"param_scheduler[{index}]: "
                         f"{'added ' + new['type'] if old is None else 'removed ' + old['type']}")
            continue
        if old.get("type") != new.get("type"):
            lines.append(f"param_scheduler[{index}]: {old.get('type')} -> {new.get('type')}")
            continue
        edits = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in new
                 if old.get(key) != new.get(key)]
        if edits:
            lines.append(f"param_scheduler[{index}] {new['type']}: " + ", ".join(edits))
    return lines
