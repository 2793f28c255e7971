"""``custom_imports``: modules a config imports so that the classes they register are found.

As in MMEngine: ``custom_imports: {imports: [my_pkg.models], allow_failed_imports: false}``.
:func:`~accelwrap.config.load_config` imports them when it loads the config, so every
process of a multi-process launch (each loads the config) sees the same registries.

Example:
    >>> import_custom_modules({'imports': 'json'})
    ['json']
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from accelwrap.errors import ConfigError

__all__ = ["import_custom_modules"]


def import_custom_modules(spec: Any) -> list[str]:
    """Import the modules of a ``custom_imports`` section, as MMEngine does.

    Args:
        spec: ``{imports: [module, ...], allow_failed_imports: false}`` (``imports`` may be
            one string), or None.

    Returns:
        The modules imported.

    Raises:
        ConfigError: A malformed section, or a module that fails to import while
            ``allow_failed_imports`` is false (failures are warnings when it is true).

    Example:
        >>> import_custom_modules({'imports': ['json', 'os.path']})
        ['json', 'os.path']
    """
    if spec is None:
        return []
    spec = OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else spec
    if not isinstance(spec, Mapping) or set(spec) - {"imports", "allow_failed_imports"}:
        raise ConfigError("custom_imports: expected {imports: [module, ...], "
                          f"allow_failed_imports: false}}, got {spec!r}")
    names = spec.get("imports", [])
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"custom_imports.imports: expected module names, got {names!r}")
    done, problems = [], []
    for name in names:
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError as err:
            message = (f"custom_imports: {name!r} failed to import ({err}); is it installed, or "
                       "on PYTHONPATH (e.g. PYTHONPATH=. when it is in the current folder)?")
            if not spec.get("allow_failed_imports", False):
                problems.append(message)
            else:
                warnings.warn(message + " Ignored (allow_failed_imports: true).", stacklevel=2)
    if problems:
        raise ConfigError(problems)
    return done
