"""Every ``*LR`` scheduler (``mmengine.optim.scheduler.lr_scheduler``): the learning rate.

Each class is its family (math, prose, arguments) bound to ``param_name='lr'`` by
:func:`~accelwrap.optim.scheduler.factory.make_scheduler`, which also registers it.
:class:`LRSchedulerMixin` does the same binding for a scheduler class of your own.

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler.lr_scheduler import MultiStepLR
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = MultiStepLR(opt, milestones=[1], gamma=0.5, by_epoch=False)
    >>> sched.step(); opt.param_groups[0]['lr']
    0.5
"""

from __future__ import annotations

from typing import Any

from accelwrap.optim.scheduler import families, onecycle, plateau
from accelwrap.optim.scheduler.factory import make_scheduler

__all__ = [
    "ConstantLR", "CosineAnnealingLR", "CosineRestartLR", "ExponentialLR", "LinearLR",
    "MultiStepLR", "OneCycleLR", "PolyLR", "ReduceOnPlateauLR", "StepLR",
]


class LRSchedulerMixin:
    """Bind a ``ParamScheduler`` subclass to the learning rate, as MMEngine's mixin does.

    Put it first among the bases; the class then takes the arguments of the scheduler it
    mixes into, without ``param_name``.

    Args:
        optimizer: A torch optimizer or an ``OptimWrapper``.
        *args: The other arguments of the scheduler class, ``param_name`` left out.
        **kwargs: Its keyword arguments.

    Example:
        >>> import torch
        >>> from accelwrap.optim.scheduler import ParamScheduler
        >>> from accelwrap.optim.scheduler.lr_scheduler import LRSchedulerMixin
        >>> class HalvingLR(LRSchedulerMixin, ParamScheduler):
        ...     def _get_value(self):
        ...         return [g['lr'] / 2 for g in self.optimizer.param_groups]
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> HalvingLR(opt, end=2).get_last_value()
        [0.5]
    """

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, "lr", *args, **kwargs)


ConstantLR = make_scheduler(families.Constant, param_name="lr")
CosineAnnealingLR = make_scheduler(families.CosineAnnealing, param_name="lr")
CosineRestartLR = make_scheduler(families.CosineRestart, param_name="lr")
ExponentialLR = make_scheduler(families.Exponential, param_name="lr")
LinearLR = make_scheduler(families.Linear, param_name="lr")
MultiStepLR = make_scheduler(families.MultiStep, param_name="lr")
OneCycleLR = make_scheduler(onecycle.OneCycle, param_name="lr")
PolyLR = make_scheduler(families.Poly, param_name="lr")
ReduceOnPlateauLR = make_scheduler(plateau.ReduceOnPlateau, param_name="lr")
StepLR = make_scheduler(families.Step, param_name="lr")
