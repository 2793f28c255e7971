"""accelwrap: MMEngine's optimizer layer on Hugging Face Accelerate.

Importing the package fills the registries; it creates no Accelerator, sets no
warning filters and touches no global state.

Example:
    >>> import accelwrap
    >>> 'SGD' in accelwrap.registry.OPTIMIZERS and 'MLPClassifier' in accelwrap.registry.MODELS
    True
"""

from accelwrap import optim, registry, runner
from accelwrap.errors import (
    CheckpointError,
    ConfigError,
    LaunchError,
    RegistryError,
    UnknownTypeError,
)

__version__ = "0.1.0"

__all__ = ["CheckpointError", "ConfigError", "LaunchError", "RegistryError", "UnknownTypeError",
           "__version__", "optim", "registry", "runner"]
