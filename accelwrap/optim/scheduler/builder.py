"""``build_param_schedulers``: scheduler configs -> a list, or a dict of lists per optimizer.

What MMEngine's ``Runner.build_param_scheduler`` does, without a runner: configs are
copied (never mutated), ``end`` defaults to the run length (``max_epochs`` for
epoch-based, ``max_iters`` for iteration-based schedulers), and
``convert_to_iter_based=True`` uses ``epoch_length``. For an ``OptimWrapperDict`` the
result is a dict of lists keyed by member; the configs are either shared by every member
or given per member (a dict without ``type``). ``step_param_schedulers`` steps them the way
MMEngine's ``ParamSchedulerHook`` does.

A config may add ``on: updates`` (default ``on: iterations``, MMEngine's behaviour) to an
iteration-based scheduler: it then ticks only after an iteration whose update was applied
(its wrapper's ``last_update_applied``), not after accumulation micro-steps nor after
updates skipped by the fp16 loss scaler, the non-finite policy or the spike rule;
:meth:`ParamScheduler.step` checks it, so a loop that calls ``scheduler.step()`` itself
gets the same. Its ``begin``/``end`` then count updates: the default ``end`` is the run's
number of updates (``ceil(max_iters / accumulative_counts)``), and
``convert_to_iter_based`` converts epochs to the updates applied by then
(:mod:`~accelwrap.optim.scheduler.updates`). See :func:`step_on`. (accelwrap's config
loader reads YAML 1.2 booleans; a dict from a YAML 1.1 loader, whose unquoted ``on`` key
is ``True``, is understood too.)

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler import build_param_schedulers
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> cfg = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=5),
    ...        dict(type='CosineAnnealingLR', by_epoch=True, begin=1, convert_to_iter_based=True)]
    >>> scheds = build_param_schedulers(cfg, opt, epoch_length=5, max_epochs=4)
    >>> [(type(s).__name__, s.begin, s.end) for s in scheds]
    [('LinearLR', 0, 5), ('CosineAnnealingLR', 5, 20)]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig

from accelwrap.errors import suggest
from accelwrap.optim.optimizer.optimizer_wrapper_dict import members_of
from accelwrap.optim.scheduler.base import ParamScheduler
from accelwrap.optim.scheduler.updates import (
    UpdateCount,
    accumulation_of,
    run_length,
    to_updates,
)
from accelwrap.registry import PARAM_SCHEDULERS, to_plain

SchedulerList = list[ParamScheduler]
WHEN = ("iter", "epoch", "val")
STEP_ON = ("iterations", "updates")


def step_on(scheduler: ParamScheduler, on: str, where: str = "param_scheduler") -> ParamScheduler:
    """Make ``scheduler`` tick on every iteration (``'iterations'``) or applied update only.

    Args:
        scheduler: An iteration-based scheduler whose optimizer is an ``OptimWrapper``
            (for ``'updates'``).
        on: ``'iterations'`` or ``'updates'``.
        where: The config path, for messages.

    Returns:
        ``scheduler`` (its ``on`` attribute set).

    Raises:
        ValueError: Another value, an epoch-based scheduler, or a bare torch optimizer
            (which cannot tell whether an update was applied).

    Example:
        >>> import torch
        >>> from accelwrap.optim import OptimWrapper
        >>> from accelwrap.optim.scheduler import StepLR
        >>> from accelwrap.optim.scheduler.builder import step_on
        >>> wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))
        >>> step_on(StepLR(wrapper, step_size=1, by_epoch=False), 'updates').on
        'updates'
    """
    if on not in STEP_ON:
        raise ValueError(f"{where}: on={on!r} is not valid; expected 'iterations' (tick after "
                         f"every training iteration) or 'updates' (tick only after an applied "
                         f"update); {suggest(str(on), STEP_ON)}")
    if on == "updates":
        if scheduler.by_epoch:
            raise ValueError(f"{where}: on='updates' needs an iteration-based scheduler "
                             f"(by_epoch=False, or convert_to_iter_based=True); "
                             f"{type(scheduler).__name__} is epoch-based")
        if not hasattr(scheduler.optimizer, "last_update_applied"):
            raise ValueError(f"{where}: on='updates' needs an OptimWrapper as the scheduler's "
                             f"optimizer (it tells whether an update was applied), got "
                             f"{type(scheduler.optimizer).__name__}")
    scheduler.on = on
    return scheduler


def build_param_schedulers(cfgs: Any, optim_wrapper: Any, epoch_length: int | None = None,
                           max_epochs: int | None = None, max_iters: int | None = None
                           ) -> SchedulerList | dict[str, SchedulerList]:
    """Build the schedulers of a run.

    Args:
        cfgs: A scheduler or config dict, a list of them, or (for an ``OptimWrapperDict``)
            a dict keyed by member name whose values are such lists.
        optim_wrapper: A torch optimizer, an ``OptimWrapper`` or an ``OptimWrapperDict``.
        epoch_length: Iterations per epoch, for ``convert_to_iter_based=True``.
        max_epochs: Default ``end`` of epoch-based schedulers.
        max_iters: Default ``end`` of iteration-based schedulers.

    Returns:
        A list of schedulers, or for an ``OptimWrapperDict`` a dict of lists keyed by member.

    Raises:
        ValueError: A per-member dict names a member that does not exist.
        TypeError: An entry is neither a scheduler nor a config dict.
    """
    options = {"epoch_length": epoch_length, "max_epochs": max_epochs, "max_iters": max_iters}
    members = members_of(optim_wrapper)
    if members is None:
        return _build_list(cfgs, optim_wrapper, **options)
    if isinstance(cfgs, DictConfig):
        cfgs = to_plain(cfgs)
    if isinstance(cfgs, Mapping) and "type" not in cfgs:
        unknown = [name for name in cfgs if name not in members]
        if unknown:
            raise ValueError(f"param_scheduler: {unknown} are not members of the OptimWrapperDict "
                             f"({sorted(members)}); {suggest(str(unknown[0]), members)}")
        return {name: _build_list(cfgs.get(name, []), member, **options)
                for name, member in members.items()}
    return {name: _build_list(cfgs, member, **options) for name, member in members.items()}


def _build_list(cfgs: Any, target: Any, epoch_length: int | None, max_epochs: int | None,
                max_iters: int | None) -> SchedulerList:
    items = list(cfgs) if isinstance(cfgs, (list, tuple, ListConfig)) else [cfgs]
    schedulers = []
    for index, item in enumerate(items):
        if isinstance(item, ParamScheduler):
            schedulers.append(item)
            continue
        if not isinstance(item, (Mapping, DictConfig)):
            raise TypeError(f"param_scheduler[{index}]: expected a scheduler or a config dict, "
                            f"got {type(item).__name__} ({item!r})")
        cfg = to_plain(item)
        # PyYAML / OmegaConf (YAML 1.1) read an unquoted `on:` key as true: take both
        on = cfg.pop("on", cfg.pop(True, "iterations"))
        if on == "updates":
            cfg = _count_updates(cfg, target, f"param_scheduler[{index}]", epoch_length,
                                 max_epochs, max_iters)
        by_epoch = cfg.get("by_epoch", True)
        default_end = max_epochs if by_epoch else max_iters
        defaulted = "end" not in cfg and default_end is not None
        if defaulted:
            cfg["end"] = default_end
        try:
            scheduler = PARAM_SCHEDULERS.build(
                cfg, default_args={"optimizer": target, "epoch_length": epoch_length})
        except ValueError as err:
            if defaulted and err.args and re.search(r"\bend\b", str(err.args[0])):
                source = "train_cfg.max_epochs" if by_epoch else "train_cfg.max_iters"
                err.args = (f"{err.args[0]} (end={default_end} is {source}, the default end "
                            f"of a scheduler without one)", *err.args[1:])
            raise
        schedulers.append(step_on(scheduler, on, f"param_scheduler[{index}]"))
    return schedulers


def _count_updates(cfg: dict, target: Any, where: str, epoch_length: int | None,
                   max_epochs: int | None, max_iters: int | None) -> dict:
    """An ``on: updates`` config whose default ``end`` and epoch counts are in updates."""
    convert = cfg.get("convert_to_iter_based", False)
    by_epoch = cfg.get("by_epoch", True)
    if by_epoch and not convert:
        return cfg  # step_on refuses it
    kind = cfg.get("type")
    cls = PARAM_SCHEDULERS.get(kind) if isinstance(kind, str) else kind
    name = getattr(cls, "__name__", str(kind))
    count_args = getattr(cls, "epoch_count_args", ())
    if (convert and count_args is None) or (not convert and "end" in cfg):
        return cfg  # nothing counted in iterations (or the registry refuses it)
    if not convert and max_iters is None:
        return cfg
    where = f"{where} {name}"
    counter = UpdateCount(accumulation_of(target, where),
                          run_length(max_iters, max_epochs, epoch_length, target))
    if not convert:
        return {**cfg, "end": counter.position(max_iters)}
    if "end" not in cfg and max_epochs is not None:
        cfg = {**cfg, "end": max_epochs}
    return to_updates(cfg, tuple(count_args or ()), epoch_length, counter, where)


def step_param_schedulers(schedulers: SchedulerList | Mapping[str, SchedulerList], when: str,
                          metrics: Mapping[str, Any] | None = None) -> None:
    """Step the schedulers that belong to this moment of the loop, as MMEngine's hook does.

    Args:
        schedulers: A list of schedulers, or a dict of lists (``OptimWrapperDict``).
        when: ``'iter'`` after a training iteration (iteration-based schedulers; those
            with ``on='updates'`` only when their wrapper's last update was applied),
            ``'epoch'`` after a training epoch (epoch-based ones, plateau ones only count),
            ``'val'`` after validation (``need_val_args`` ones, with ``metrics``).
        metrics: The validation results, for ``when='val'``.

    Raises:
        ValueError: ``when`` is not one of 'iter', 'epoch', 'val'.

    Example:
        >>> import torch
        >>> from accelwrap.optim.scheduler import StepLR, step_param_schedulers
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> scheds = [StepLR(opt, step_size=1, gamma=0.5, by_epoch=False)]
        >>> step_param_schedulers(scheds, 'epoch'); opt.param_groups[0]['lr']
        1.0
        >>> step_param_schedulers(scheds, 'iter'); opt.param_groups[0]['lr']
        0.5
    """
    if when not in WHEN:
        raise ValueError(f"step_param_schedulers: when must be one of {list(WHEN)}, got {when!r}; "
                         f"{suggest(str(when), WHEN)}")
    lists = schedulers.values() if isinstance(schedulers, Mapping) else [schedulers]
    for group in lists:
        for scheduler in group:
            if when == "iter" and not scheduler.by_epoch:
                scheduler.step()  # an on='updates' one skips an iteration without update
            elif when == "epoch" and scheduler.by_epoch:
                scheduler.step()
            elif (when == "val" and scheduler.by_epoch
                  and getattr(scheduler, "need_val_args", False)):
                scheduler.step(metrics)
