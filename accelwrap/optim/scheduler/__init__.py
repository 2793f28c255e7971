"""Parameter schedulers with MMEngine's names, arguments and numbers (re-exports only).

The classes live in MMEngine's modules: :mod:`~accelwrap.optim.scheduler.param_scheduler`,
:mod:`~accelwrap.optim.scheduler.lr_scheduler` and
:mod:`~accelwrap.optim.scheduler.momentum_scheduler`.
"""

from accelwrap.optim.scheduler import lr_scheduler, momentum_scheduler, param_scheduler
from accelwrap.optim.scheduler.builder import build_param_schedulers, step_param_schedulers
from accelwrap.optim.scheduler.chainable import ChainableScheduler
from accelwrap.optim.scheduler.lr_scheduler import *  # noqa: F403 - every *LR class
from accelwrap.optim.scheduler.momentum_scheduler import *  # noqa: F403 - every *Momentum
from accelwrap.optim.scheduler.param_scheduler import *  # noqa: F403 - base, *ParamScheduler
from accelwrap.optim.scheduler.plateau import MetricNotFoundError, ReduceOnPlateauScheduler

__all__ = [
    *param_scheduler.__all__, *lr_scheduler.__all__, *momentum_scheduler.__all__,
    "ChainableScheduler", "MetricNotFoundError", "ReduceOnPlateauScheduler",
    "build_param_schedulers", "step_param_schedulers",
]
