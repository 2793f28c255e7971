"""Configs: YAML files with ``_base_`` inheritance, overrides, variables, ``custom_imports``.

Example:
    >>> cfg = resolve_config(OmegaConf.create({'n': 4, 'train_cfg': {'max_epochs': '${n}'}}))
    >>> cfg.train_cfg.max_epochs
    4
"""

from omegaconf import OmegaConf

from accelwrap.config.config import (
    BASE_KEY,
    DELETE_KEY,
    ConfigError,
    ConfigLoader,
    apply_overrides,
    load_config,
    merge_configs,
    parse_yaml,
    save_config,
)
from accelwrap.config.imports import import_custom_modules
from accelwrap.config.variables import SECTIONS, calc, helper_keys, quote_calc, resolve_config

__all__ = ["BASE_KEY", "DELETE_KEY", "SECTIONS", "ConfigError", "ConfigLoader", "OmegaConf",
           "apply_overrides", "calc", "helper_keys", "import_custom_modules", "load_config",
           "merge_configs", "parse_yaml", "quote_calc", "resolve_config", "save_config"]
