"""Registries: name -> class maps that build objects from ``type=`` configs.

Mirrors ``mmengine.registry``: :class:`Registry` (parents, scopes, ``locations``),
:class:`DefaultScope`, the build functions and MMEngine's root registries. The
optimizer-layer registries are filled when :mod:`accelwrap` is imported. Building from a
config never mutates it; an unknown ``type`` lists the closest registered names; an
argument the target does not take is named with the ones it does take.

Example:
    >>> import torch
    >>> from accelwrap.registry import OPTIMIZERS
    >>> params = [torch.nn.Parameter(torch.zeros(2))]
    >>> opt = OPTIMIZERS.build({'type': 'SGD', 'lr': 0.1}, default_args={'params': params})
    >>> type(opt).__name__
    'SGD'
"""

from accelwrap.arguments import check_arguments, signature_problems, to_plain, type_name
from accelwrap.registry.build_functions import (
    build_from_cfg,
    build_model_from_cfg,
    build_optimizer_from_cfg,
    build_runner_from_cfg,
    build_scheduler_from_cfg,
    split_cfg,
)
from accelwrap.registry.default_scope import DefaultScope
from accelwrap.registry.registry import Registry
from accelwrap.registry.root import *  # noqa: F403 - every root registry
from accelwrap.registry.root import __all__ as _roots
from accelwrap.registry.utils import (
    count_registered_modules,
    init_default_scope,
    traverse_registry_tree,
)

__all__ = [
    *_roots, "DefaultScope", "Registry", "build_from_cfg", "build_model_from_cfg",
    "build_optimizer_from_cfg", "build_runner_from_cfg", "build_scheduler_from_cfg",
    "check_arguments", "count_registered_modules", "init_default_scope", "signature_problems",
    "split_cfg", "to_plain", "traverse_registry_tree", "type_name",
]
