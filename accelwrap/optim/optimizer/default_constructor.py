"""``DefaultOptimWrapperConstructor``: model + config -> optimizer wrapper, with ``paramwise_cfg``.

MMEngine's constructor, same arguments and the same per-parameter numbers (the rules
live in :mod:`accelwrap.optim.optimizer.paramwise`). Beyond MMEngine:

* ``paramwise_cfg.merge_groups=True`` puts parameters with identical settings into one
  group (fewer groups, same numbers per parameter; off by default so optimizer state
  dicts keep MMEngine's one-group-per-parameter layout);
* a ``custom_keys`` entry that matches no parameter name is a warning naming at most five
  near names (OpenMMLab's shared schedules carry keys for parameters only some model
  variants have), and an error with ``paramwise_cfg.strict_custom_keys: true``;
* a parameter reached twice (a shared module) without ``bypass_duplicate=True`` is an
  error naming both paths (torch's message names neither);
* :meth:`DefaultOptimWrapperConstructor.describe` returns one row per parameter: name,
  shape, module type, settings and the rule that decided them.

Custom constructors register with ``@OPTIM_WRAPPER_CONSTRUCTORS.register_module()`` and
are chosen by ``constructor=`` in the optim-wrapper config; subclasses may override
``add_params`` (MMEngine's extension point) and read their own ``paramwise_cfg`` keys
(mmpretrain's ``layer_decay_rate``, ``num_layers``, ...). The default constructor refuses
a key it does not know; a subclass written for MMEngine gets one warning naming the
keys, which it silences by listing them in ``extra_paramwise_keys`` (a subclass that
lists them gets the strict check: a typo is an error with suggestions).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer

from accelwrap.errors import ValueAssertionError, suggest
from accelwrap.optim.optimizer.paramwise import (
    PARAMWISE_KEYS,
    ParamwiseRules,
    is_dcn,
    merge_param_groups,
)
from accelwrap.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    check_arguments,
    to_plain,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamRow:
    """One parameter as the constructor sees it (what ``accelwrap groups`` prints).

    Attributes:
        name: Dotted name in the model.
        shape: The parameter's shape.
        module_type: Class name of the module that owns it directly.
        settings: The optimizer settings it gets (the optimizer config's values overridden
            by its group's; empty when it is not optimized).
        rule: What decided them: ``'default'``, ``"custom_keys['head']"``,
            ``'bias_lr_mult+bias_decay_mult'``, ``'skipped: requires_grad=False'``, ...
    """

    name: str
    shape: tuple[int, ...]
    module_type: str
    settings: dict[str, Any]
    rule: str


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip ``DataParallel``/``DistributedDataParallel`` and ``torch.compile`` wrappers.

    MMEngine unwraps any model with a ``module`` attribute; accelwrap unwraps only real
    wrappers, so a user model with a child called ``module`` keeps its own names.
    """
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def named_params_with_owner(model: nn.Module) -> Iterator[tuple[str, nn.Parameter, nn.Module]]:
    """Every ``(dotted name, parameter, owning module)``, shared ones under each of their names."""
    for module_name, module in model.named_modules(remove_duplicate=False):
        for name, param in module.named_parameters(recurse=False):
            yield (f"{module_name}.{name}" if module_name else name), param, module


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DefaultOptimWrapperConstructor:
    """Build an optimizer wrapper for a model, with optional per-parameter settings.

    Args:
        optim_wrapper_cfg: The wrapper config: ``optimizer`` (required, a config with
            ``type``), ``type`` (default ``'OptimWrapper'``) and the wrapper's own
            arguments (``accumulative_counts``, ``clip_grad``, ``accelerator``, ...).
            Never modified.
        paramwise_cfg: Per-parameter rules (see :mod:`accelwrap.optim.optimizer.paramwise`) plus
            ``bypass_duplicate`` and ``merge_groups``. None or empty: one group with all
            of ``model.parameters()``, as in MMEngine.

    Raises:
        TypeError: A config is not a dict.
        ValueError: ``optimizer`` is missing, or ``paramwise_cfg`` is invalid
            (:class:`~accelwrap.errors.ConfigError` listing every problem).
        UnknownTypeError: The optimizer or wrapper type is not registered.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
        >>> ctor = DefaultOptimWrapperConstructor(
        ...     dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4)),
        ...     paramwise_cfg=dict(norm_decay_mult=0.0, merge_groups=True))
        >>> [(g.get('weight_decay'), len(g['params'])) for g in ctor.param_groups(model)]
        [(None, 2), (0.0, 2)]
        >>> ctor.describe(model)[2].rule
        'norm_decay_mult'
    """

    #: ``paramwise_cfg`` keys a subclass understands besides the default ones.
    extra_paramwise_keys: tuple[str, ...] = ()

    def __init__(self, optim_wrapper_cfg: Mapping[str, Any] | DictConfig,
                 paramwise_cfg: Mapping[str, Any] | DictConfig | None = None) -> None:
        if not isinstance(optim_wrapper_cfg, (Mapping, DictConfig)):
            raise TypeError(f"{type(self).__name__}: optim_wrapper_cfg must be a dict, got "
                            f"{type(optim_wrapper_cfg).__name__} ({optim_wrapper_cfg!r})")
        if paramwise_cfg is not None and not isinstance(paramwise_cfg, (Mapping, DictConfig)):
            raise TypeError(f"{type(self).__name__}: paramwise_cfg must be a dict or None, "
                            f"got {type(paramwise_cfg).__name__} ({paramwise_cfg!r})")
        self.optim_wrapper_cfg = to_plain(optim_wrapper_cfg)
        self.optimizer_cfg = self._pop_optimizer_cfg(self.optim_wrapper_cfg)
        self.paramwise_cfg = to_plain(paramwise_cfg) if paramwise_cfg is not None else {}
        self.base_lr = self.optimizer_cfg.get("lr")
        self.base_wd = self.optimizer_cfg.get("weight_decay")
        self._validate_cfg()  # before the type: MMEngine reports paramwise problems first
        if "type" not in self.optimizer_cfg:
            raise TypeError(f"{type(self).__name__}: 'optimizer' must be a dict with a 'type' "
                            f"(e.g. {{'type': 'SGD', 'lr': 0.01}}), got {self.optimizer_cfg!r}")
        with OPTIMIZERS.switch_scope_and_registry(None) as optimizers:  # as build() looks up
            self.optimizer_cls = optimizers.get(self.optimizer_cfg["type"])
        self._records: dict[str, str] | None = None

    def _validate_cfg(self) -> None:
        """Check ``paramwise_cfg`` (every problem at once) and keep its rules in ``self.rules``.

        Raises:
            ConfigError: Bad values, multipliers without their base, or (for the default
                constructor) unknown keys.
        """
        extra = tuple(self.extra_paramwise_keys)
        if type(self) is not DefaultOptimWrapperConstructor and not extra:
            own = tuple(k for k in self.paramwise_cfg if k not in (*PARAMWISE_KEYS, *extra))
            if own:
                warnings.warn(f"{type(self).__name__}: paramwise_cfg keys {list(own)} are not "
                              "DefaultOptimWrapperConstructor's; they are left to the subclass. "
                              "List them in its extra_paramwise_keys to declare them",
                              UserWarning, stacklevel=3)
            extra += own
        self.rules = ParamwiseRules.from_cfg(self.paramwise_cfg, self.optimizer_cfg, extra)

    def _is_in(self, param_group: dict[str, Any], param_group_list: list[dict[str, Any]]) -> bool:
        """Whether any parameter of ``param_group`` is already in ``param_group_list``.

        MMEngine's helper, for subclasses that build groups themselves.
        """
        seen = {id(p) for group in param_group_list for p in group["params"]}
        return any(id(p) in seen for p in param_group["params"])

    def _pop_optimizer_cfg(self, cfg: dict[str, Any]) -> dict[str, Any]:
        if "optimizer" not in cfg:  # MMEngine asserts it
            raise ValueAssertionError(
                f"{type(self).__name__}: the optim_wrapper config has no 'optimizer' key "
                f"(keys given: {sorted(map(str, cfg))}). For several optimizers give one "
                "wrapper config per model member, or a constructor= that builds them")
        optimizer_cfg = cfg.pop("optimizer")
        if not isinstance(optimizer_cfg, Mapping):
            raise TypeError(f"{type(self).__name__}: 'optimizer' must be a dict with a 'type' "
                            f"(e.g. {{'type': 'SGD', 'lr': 0.01}}), got {optimizer_cfg!r}")
        return dict(optimizer_cfg)

    def add_params(self, params: list[dict[str, Any]], module: nn.Module, prefix: str = "",
                   is_dcn_module: bool | None = None) -> None:
        """Append one parameter group per parameter of ``module`` (recursively) to ``params``.

        MMEngine's extension point: subclasses may override it.

        Args:
            params: Parameter groups so far; appended to in place.
            module: The module whose parameters to add.
            prefix: ``module``'s dotted path in the model.
            is_dcn_module: Whether ``module`` is a child of a deformable conv.
        """
        seen = ({id(p) for group in params for p in group["params"]}
                if self.rules.bypass_duplicate else set())
        for name, param in module.named_parameters(recurse=False):
            full_name = f"{prefix}.{name}" if prefix else name
            if id(param) in seen:
                logger.warning("%s is skipped: it is a duplicate (bypass_duplicate=True)",
                               full_name)
                self._record(full_name, "skipped: duplicate (bypass_duplicate)")
                continue
            if not param.requires_grad:
                logger.info("%s is skipped: requires_grad=False", full_name)
                self._record(full_name, "skipped: requires_grad=False")
                continue
            settings, rule = self.rules.decide(name, param, module, prefix, is_dcn_module)
            params.append({"params": [param], **settings})
            self._record(full_name, rule)
        in_dcn = is_dcn(module)
        for child_name, child in module.named_children():
            child_prefix = f"{prefix}.{child_name}" if prefix else child_name
            self.add_params(params, child, prefix=child_prefix, is_dcn_module=in_dcn)

    def _record(self, full_name: str, rule: str) -> None:
        if self._records is not None:
            self._records.setdefault(full_name, rule)

    def param_groups(self, model: nn.Module) -> list[Any]:
        """What the optimizer is given: parameter groups, or all parameters without
        ``paramwise_cfg``.

        Args:
            model: The model (DDP / compiled wrappers are stripped).

        Returns:
            A list of group dicts, or of parameters when there is no ``paramwise_cfg``.

        Raises:
            ValueError: A ``custom_keys`` entry matches no parameter (only with
                ``strict_custom_keys``), or a parameter is reached twice without
                ``bypass_duplicate=True``.
        """
        model = unwrap_model(model)
        if not self.paramwise_cfg:
            return list(model.parameters())
        self._check_custom_keys(model)
        groups: list[dict[str, Any]] = []
        self.add_params(groups, model)
        self._check_duplicates(model, groups)
        return merge_param_groups(groups) if self.rules.merge_groups else groups

    def unmatched_custom_keys(self, model: nn.Module) -> list[str]:
        """One sentence per ``custom_keys`` entry that matches no parameter name of ``model``.

        Args:
            model: The model (DDP / compiled wrappers are stripped).

        Returns:
            The sentences, each naming the key and at most five near names.

        Example:
            >>> ctor = DefaultOptimWrapperConstructor(
            ...     dict(optimizer=dict(type='SGD', lr=0.1)),
            ...     dict(custom_keys={'haed': dict(lr_mult=0.1)}))
            >>> ctor.unmatched_custom_keys(nn.Sequential())[0][:46]
            "paramwise_cfg.custom_keys['haed'] matches no p"
        """
        names = [name for name, _, _ in named_params_with_owner(unwrap_model(model))]
        matched = {f".{n}" if "." not in n else n for n in names}
        pieces = {".".join(parts[i:j]) for parts in (n.split(".") for n in names)
                  for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)}
        return [f"paramwise_cfg.custom_keys[{key!r}] matches no parameter name (a key matches "
                f"when it is a substring of the name); {suggest(key, pieces, n=5, list_all=False)}"
                for key in self.rules.custom_keys if not any(key in n for n in matched)]

    def _check_custom_keys(self, model: nn.Module) -> None:
        unmatched = self.unmatched_custom_keys(model)
        if unmatched and self.rules.strict_custom_keys:
            raise ValueError("; ".join(unmatched))
        for sentence in unmatched:
            warnings.warn(f"{sentence}. Its settings apply to nothing; set "
                          "paramwise_cfg.strict_custom_keys: true to make this an error",
                          UserWarning, stacklevel=4)

    def _check_duplicates(self, model: nn.Module, groups: list[dict[str, Any]]) -> None:
        seen: set[int] = set()
        for group in groups:
            for param in group["params"]:
                if id(param) in seen:
                    names = [n for n, p, _ in named_params_with_owner(model) if p is param]
                    raise ValueError(
                        "some parameters appear in more than one parameter group: parameter "
                        f"{names[0]!r} is reached under several names ({names}); set "
                        "paramwise_cfg.bypass_duplicate=True to optimize it once")
                seen.add(id(param))

    def describe(self, model: nn.Module) -> list[ParamRow]:
        """One row per parameter name: shape, module type, settings, and the deciding rule.

        Args:
            model: The model.

        Returns:
            Rows in model order; a shared parameter appears under each of its names.
        """
        self._records = {}
        try:
            groups = self.param_groups(model)
        finally:
            records, self._records = self._records, None
        base = {k: v for k, v in self.optimizer_cfg.items() if k != "type"}
        placed: dict[int, dict[str, Any]] = {}
        for group in groups:
            overrides = {k: v for k, v in group.items() if k != "params"} if isinstance(
                group, Mapping) else {}
            for param in group["params"] if isinstance(group, Mapping) else [group]:
                placed[id(param)] = {**base, **overrides}
        fallback = f"{type(self).__name__}.add_params" if self.paramwise_cfg else "default"
        rows, first_name = [], {}
        for name, param, module in named_params_with_owner(unwrap_model(model)):
            first = first_name.setdefault(id(param), name)
            rule = records.get(name) or (
                f"same parameter as {first!r}" if first != name and records
                else fallback if id(param) in placed else "not optimized")
            settings = {} if rule.startswith("skipped") else placed.get(id(param), {})
            rows.append(ParamRow(name, tuple(param.shape), type(module).__name__, settings, rule))
        return rows

    def build_optimizer(self, model: nn.Module) -> Optimizer:
        """Build the optimizer over :meth:`param_groups` (the optimizer's first argument)."""
        first_arg = next(iter(inspect.signature(self.optimizer_cls).parameters))
        if first_arg in self.optimizer_cfg:
            raise ValueError(f"optimizer.{first_arg} must not be set in the config: the "
                             f"constructor fills it with the model's parameters")
        return OPTIMIZERS.build({**self.optimizer_cfg, first_arg: self.param_groups(model)})

    def __call__(self, model: nn.Module) -> Any:
        """Build the optimizer, then the wrapper around it.

        Args:
            model: The model to optimize.

        Returns:
            The optimizer wrapper built from ``optim_wrapper_cfg``.
        """
        wrapper_cfg = {"type": "OptimWrapper", **self.optim_wrapper_cfg}
        wrapper_cls = OPTIM_WRAPPERS.get(wrapper_cfg["type"])  # fail before building anything
        wrapper_args = {k: v for k, v in wrapper_cfg.items() if k != "type"}
        check_arguments(wrapper_cls, {**wrapper_args, "optimizer": None},
                        f"OPTIM_WRAPPERS {wrapper_cfg['type']!r}")
        optimizer = self.build_optimizer(model)
        return OPTIM_WRAPPERS.build(wrapper_cfg, default_args={"optimizer": optimizer})


__all__ = ["DefaultOptimWrapperConstructor", "ParamRow", "named_params_with_owner",
           "unwrap_model"]
