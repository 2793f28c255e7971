"""Config validation without building anything costly: registries, signatures, value types.

Used by the runner before it builds (one ``ConfigError`` for every problem) and by the
``accelwrap check`` command.
"""

from accelwrap.checks.engine import (
    argument_problems,
    check_component,
    check_config,
    check_optim_wrapper,
    check_schedulers,
)
from accelwrap.checks.value_types import value_problems

__all__ = ["argument_problems", "check_component", "check_config", "check_optim_wrapper",
           "check_schedulers", "value_problems"]
