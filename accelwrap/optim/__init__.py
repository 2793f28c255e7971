"""Optimizer wrappers, constructors, optimizers and parameter schedulers (mirrors ``mmengine.optim``)."""

from accelwrap.optim.wrapper import OptimWrapper
from accelwrap.optim.amp import AmpOptimWrapper, ApexOptimWrapper
from accelwrap.optim.wrapper_dict import OptimWrapperDict
from accelwrap.optim.accelerate_setup import make_accelerator, prepare

__all__: list[str] = []
__all__ += ["OptimWrapper", "AmpOptimWrapper", "ApexOptimWrapper", "OptimWrapperDict",
            "make_accelerator", "prepare"]

from accelwrap.optim import optimizers as _optimizers  # noqa: F401 - fills OPTIMIZERS
from accelwrap.optim.builder import build_optim_wrapper
from accelwrap.optim.constructor import DefaultOptimWrapperConstructor

__all__ += ["DefaultOptimWrapperConstructor", "ZeroRedundancyOptimizer", "build_optim_wrapper"]


def __getattr__(name: str):
    """Load ``ZeroRedundancyOptimizer`` on first use (``torch.distributed.optim`` imports slowly)."""
    if name == "ZeroRedundancyOptimizer":
        from accelwrap.optim.zero_optimizer import ZeroRedundancyOptimizer
        return ZeroRedundancyOptimizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

from accelwrap.optim.scheduler import *  # noqa: E402,F401,F403 - every scheduler class
from accelwrap.optim.scheduler import __all__ as _scheduler_all  # noqa: E402

__all__ += _scheduler_all
