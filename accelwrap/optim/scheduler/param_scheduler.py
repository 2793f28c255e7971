"""The base class and every ``*ParamScheduler`` (``mmengine.optim.scheduler.param_scheduler``).

A ``*ParamScheduler`` schedules any param-group key, named by its second argument
``param_name``. Each class is its family (math, prose, arguments) bound to ``param_name`` by
:func:`~accelwrap.optim.scheduler.factory.make_scheduler`, which also registers it.

Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler.param_scheduler import LinearParamScheduler
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, weight_decay=0.01)
    >>> sched = LinearParamScheduler(opt, 'weight_decay', start_factor=0.5, end=2, by_epoch=False)
    >>> opt.param_groups[0]['weight_decay']
    0.005
"""

from accelwrap.optim.scheduler import families, onecycle, plateau
from accelwrap.optim.scheduler.base import INF, ParamScheduler, _ParamScheduler
from accelwrap.optim.scheduler.factory import make_scheduler

__all__ = [
    "INF", "ParamScheduler", "_ParamScheduler", "ConstantParamScheduler",
    "CosineAnnealingParamScheduler", "CosineRestartParamScheduler", "ExponentialParamScheduler",
    "LinearParamScheduler", "MultiStepParamScheduler", "OneCycleParamScheduler",
    "PolyParamScheduler", "ReduceOnPlateauParamScheduler", "StepParamScheduler",
]

ConstantParamScheduler = make_scheduler(families.Constant, param_name=None)
CosineAnnealingParamScheduler = make_scheduler(families.CosineAnnealing, param_name=None)
CosineRestartParamScheduler = make_scheduler(families.CosineRestart, param_name=None)
ExponentialParamScheduler = make_scheduler(families.Exponential, param_name=None)
LinearParamScheduler = make_scheduler(families.Linear, param_name=None)
MultiStepParamScheduler = make_scheduler(families.MultiStep, param_name=None)
OneCycleParamScheduler = make_scheduler(onecycle.OneCycle, param_name=None)
PolyParamScheduler = make_scheduler(families.Poly, param_name=None)
ReduceOnPlateauParamScheduler = make_scheduler(plateau.ReduceOnPlateau, param_name=None)
StepParamScheduler = make_scheduler(families.Step, param_name=None)
