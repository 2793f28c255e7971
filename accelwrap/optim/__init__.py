"""Optimizer wrappers, constructors, optimizers and parameter schedulers (mirrors ``mmengine.optim``).

Re-exports only. ``ZeroRedundancyOptimizer`` is loaded on first access, because
``torch.distributed.optim`` takes most of a second to import.
"""

from typing import Any

from accelwrap.optim import optimizers as _optimizers  # noqa: F401 - fills OPTIMIZERS
from accelwrap.optim.accelerate_setup import make_accelerator, prepare
from accelwrap.optim.amp import AmpOptimWrapper, ApexOptimWrapper
from accelwrap.optim.builder import build_optim_wrapper
from accelwrap.optim.constructor import DefaultOptimWrapperConstructor
from accelwrap.optim.scheduler import *  # noqa: F401,F403 - every scheduler class
from accelwrap.optim.scheduler import __all__ as _scheduler_all
from accelwrap.optim.wrapper import OptimWrapper
from accelwrap.optim.wrapper_dict import OptimWrapperDict

__all__ = [
    "OptimWrapper", "AmpOptimWrapper", "ApexOptimWrapper", "OptimWrapperDict",
    "make_accelerator", "prepare",
    "DefaultOptimWrapperConstructor", "ZeroRedundancyOptimizer", "build_optim_wrapper",
    *_scheduler_all,
]


def __getattr__(name: str) -> Any:
    """Load ``ZeroRedundancyOptimizer`` on first use (``torch.distributed.optim`` imports slowly)."""
    if name == "ZeroRedundancyOptimizer":
        from accelwrap.optim.zero_optimizer import ZeroRedundancyOptimizer
        return ZeroRedundancyOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
