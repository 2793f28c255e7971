"""Every ``*Momentum`` scheduler (``mmengine.optim.scheduler.momentum_scheduler``).

The momentum is the ``momentum`` key of SGD-style optimizers and ``betas[0]`` of Adam-style
ones (``momentum`` is kept in step with it). Each class is its family (math, prose,
arguments) bound to ``param_name='momentum'`` by
:func:`~accelwrap.optim.scheduler.factory.make_scheduler`, which also registers it.
:class:`MomentumSchedulerMixin` does the same binding for a scheduler class of your own.
OneCycle has no Momentum variant, as in MMEngine.

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler.momentum_scheduler import StepMomentum
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.999))
    >>> sched = StepMomentum(opt, step_size=1, gamma=0.5, by_epoch=False)
    >>> sched.step(); opt.param_groups[0]['betas']
    (0.45, 0.999)
"""

from __future__ import annotations

from typing import Any

from accelwrap.optim.scheduler import families, plateau
from accelwrap.optim.scheduler.factory import make_scheduler

__all__ = [
    "ConstantMomentum", "CosineAnnealingMomentum", "CosineRestartMomentum",
    "ExponentialMomentum", "LinearMomentum", "MultiStepMomentum", "PolyMomentum",
    "ReduceOnPlateauMomentum", "StepMomentum",
]


class MomentumSchedulerMixin:
    """Bind a ``ParamScheduler`` subclass to the momentum, as MMEngine's mixin does.

    Put it first among the bases; the class then takes the arguments of the scheduler it
    mixes into, without ``param_name``, and writes ``betas[0]`` for Adam-style optimizers.

    Args:
        optimizer: A torch optimizer with ``momentum`` or ``betas``, or an ``OptimWrapper``.
        *args: The other arguments of the scheduler class, ``param_name`` left out.
        **kwargs: Its keyword arguments.

    Example:
        >>> import torch
        >>> from accelwrap.optim.scheduler import ParamScheduler
        >>> from accelwrap.optim.scheduler.momentum_scheduler import MomentumSchedulerMixin
        >>> class HalvingMomentum(MomentumSchedulerMixin, ParamScheduler):
        ...     def _get_value(self):
        ...         return [g['momentum'] / 2 for g in self.optimizer.param_groups]
        >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], betas=(0.9, 0.999))
        >>> _ = HalvingMomentum(opt, end=2); opt.param_groups[0]['betas']
        (0.45, 0.999)
    """

    schedules_momentum = True

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, "momentum", *args, **kwargs)


ConstantMomentum = make_scheduler(families.Constant, param_name="momentum")
CosineAnnealingMomentum = make_scheduler(families.CosineAnnealing, param_name="momentum")
CosineRestartMomentum = make_scheduler(families.CosineRestart, param_name="momentum")
ExponentialMomentum = make_scheduler(families.Exponential, param_name="momentum")
LinearMomentum = make_scheduler(families.Linear, param_name="momentum")
MultiStepMomentum = make_scheduler(families.MultiStep, param_name="momentum")
PolyMomentum = make_scheduler(families.Poly, param_name="momentum")
ReduceOnPlateauMomentum = make_scheduler(plateau.ReduceOnPlateau, param_name="momentum")
StepMomentum = make_scheduler(families.Step, param_name="momentum")
