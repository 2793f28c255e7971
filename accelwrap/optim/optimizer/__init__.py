"""Optimizer wrappers, the constructor and the builder (mirrors ``mmengine.optim.optimizer``).

Re-exports only. ``ZeroRedundancyOptimizer`` is loaded on first access, because
``torch.distributed.optim`` takes most of a second to import.
"""

from typing import Any

from accelwrap.optim.optimizer.amp_optimizer_wrapper import AmpOptimWrapper
from accelwrap.optim.optimizer.apex_optimizer_wrapper import ApexOptimWrapper
from accelwrap.optim.optimizer.base import BaseOptimWrapper
from accelwrap.optim.optimizer.builder import build_optim_wrapper
from accelwrap.optim.optimizer.default_constructor import DefaultOptimWrapperConstructor
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper
from accelwrap.optim.optimizer.optimizer_wrapper_dict import OptimWrapperDict
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS

__all__ = [
    "OPTIM_WRAPPER_CONSTRUCTORS", "OPTIMIZERS", "AmpOptimWrapper", "ApexOptimWrapper",
    "BaseOptimWrapper", "DefaultOptimWrapperConstructor", "OptimWrapper", "OptimWrapperDict",
    "ZeroRedundancyOptimizer", "build_optim_wrapper",
]


def __getattr__(name: str) -> Any:
    """Load ``ZeroRedundancyOptimizer`` on first use (``torch.distributed.optim`` is slow)."""
    if name == "ZeroRedundancyOptimizer":
        from accelwrap.optim.optimizer.zero_optimizer import ZeroRedundancyOptimizer
        return ZeroRedundancyOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
