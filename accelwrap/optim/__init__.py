"""Optimizer wrappers, constructors, optimizers and schedulers (mirrors ``mmengine.optim``).

Re-exports only: the code lives in :mod:`accelwrap.optim.optimizer`,
:mod:`accelwrap.optim.scheduler` and :mod:`accelwrap.optim.accelerator`.
``ZeroRedundancyOptimizer`` is loaded on first access (see :mod:`accelwrap.optim.optimizer`).
"""

from typing import Any

from accelwrap.optim import optimizer as _optimizer
from accelwrap.optim.accelerator import make_accelerator, prepare
from accelwrap.optim.optimizer import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIMIZERS,
    AmpOptimWrapper,
    ApexOptimWrapper,
    BaseOptimWrapper,
    DefaultOptimWrapperConstructor,
    OptimWrapper,
    OptimWrapperDict,
    build_optim_wrapper,
)
from accelwrap.optim.scheduler import *  # noqa: F403 - every scheduler class
from accelwrap.optim.scheduler import __all__ as _scheduler_all
from accelwrap.registry import PARAM_SCHEDULERS

__all__ = [
    "OPTIM_WRAPPER_CONSTRUCTORS", "OPTIMIZERS", "PARAM_SCHEDULERS", "AmpOptimWrapper",
    "ApexOptimWrapper", "BaseOptimWrapper", "DefaultOptimWrapperConstructor", "OptimWrapper",
    "OptimWrapperDict", "ZeroRedundancyOptimizer", "build_optim_wrapper", "make_accelerator",  # noqa: F405 - lazy
    "prepare", *_scheduler_all,
]


def __getattr__(name: str) -> Any:
    """Forward lazily loaded names (``ZeroRedundancyOptimizer``) to the optimizer package."""
    return getattr(_optimizer, name)
