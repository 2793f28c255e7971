"""Parameter schedulers with MMEngine's names, arguments and numbers (re-exports only)."""

from accelwrap.optim.scheduler.base import INF, ParamScheduler, _ParamScheduler
from accelwrap.optim.scheduler.builder import build_param_schedulers, step_param_schedulers
from accelwrap.optim.scheduler.chainable import ChainableScheduler
from accelwrap.optim.scheduler.plateau import MetricNotFoundError, ReduceOnPlateauScheduler
from accelwrap.optim.scheduler.variants import (
    ConstantLR, ConstantMomentum, ConstantParamScheduler, CosineAnnealingLR,
    CosineAnnealingMomentum, CosineAnnealingParamScheduler, CosineRestartLR,
    CosineRestartMomentum, CosineRestartParamScheduler, ExponentialLR, ExponentialMomentum,
    ExponentialParamScheduler, LinearLR, LinearMomentum, LinearParamScheduler, MultiStepLR,
    MultiStepMomentum, MultiStepParamScheduler, OneCycleLR, OneCycleParamScheduler, PolyLR,
    PolyMomentum, PolyParamScheduler, ReduceOnPlateauLR, ReduceOnPlateauMomentum,
    ReduceOnPlateauParamScheduler, StepLR, StepMomentum, StepParamScheduler)

SCHEDULER_CLASSES = [
    "ConstantLR", "ConstantMomentum", "ConstantParamScheduler", "CosineAnnealingLR",
    "CosineAnnealingMomentum", "CosineAnnealingParamScheduler", "CosineRestartLR",
    "CosineRestartMomentum", "CosineRestartParamScheduler", "ExponentialLR",
    "ExponentialMomentum", "ExponentialParamScheduler", "LinearLR", "LinearMomentum",
    "LinearParamScheduler", "MultiStepLR", "MultiStepMomentum", "MultiStepParamScheduler",
    "OneCycleLR", "OneCycleParamScheduler", "PolyLR", "PolyMomentum", "PolyParamScheduler",
    "ReduceOnPlateauLR", "ReduceOnPlateauMomentum", "ReduceOnPlateauParamScheduler", "StepLR",
    "StepMomentum", "StepParamScheduler",
]

__all__ = [
    *SCHEDULER_CLASSES, "INF", "ChainableScheduler", "MetricNotFoundError", "ParamScheduler",
    "ReduceOnPlateauScheduler", "_ParamScheduler", "build_param_schedulers", "step_param_schedulers",
]
