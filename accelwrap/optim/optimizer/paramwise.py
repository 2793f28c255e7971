"""``paramwise_cfg`` rules: which learning rate and weight decay each parameter gets.

The rules and their precedence are MMEngine's ``DefaultOptimWrapperConstructor``'s:

1. ``custom_keys``: the longest key that is a substring of the parameter's name (ties
   broken alphabetically) decides alone: ``lr = lr * lr_mult``, ``weight_decay =
   weight_decay * decay_mult``, and every key of the entry is copied into the group.
   Names are matched as MMEngine writes them: ``'<module path>.<param name>'``, so a
   parameter owned by the root module is matched as ``'.<name>'``.
2. Otherwise the learning rate: ``bias_lr_mult`` for biases (not in norm layers or
   DCN offset layers), then ``dcn_offset_lr_mult`` for the offset conv of a deformable
   conv; and the weight decay, first rule that applies: ``norm_decay_mult`` (norm
   layers, including ``RMSNorm``), ``bias_decay_mult``, ``dwconv_decay_mult``
   (``Conv2d`` with ``groups == in_channels``), ``flat_decay_mult`` (1-D parameters).

Beyond MMEngine: unknown keys and wrong value types are reported together with close
matches; a ``*_decay_mult`` or ``*_lr_mult`` without the optimizer's ``weight_decay`` /
``lr`` is an error naming the key, except ``flat_decay_mult``, which MMEngine silently
ignores then: accelwrap ignores it too, with a warning.

Example:
    >>> rules = ParamwiseRules.from_cfg(dict(bias_lr_mult=2.0), dict(type='SGD', lr=0.1))
    >>> import torch
    >>> layer = torch.nn.Linear(2, 2)
    >>> rules.decide('bias', layer.bias, layer, 'fc', False)
    ({'lr': 0.2}, 'bias_lr_mult')
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from accelwrap.errors import ConfigError, suggest

logger = logging.getLogger("accelwrap")

MULT_KEYS = ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
             "flat_decay_mult", "dcn_offset_lr_mult")
FLAG_KEYS = ("bypass_duplicate", "merge_groups", "strict_custom_keys")
PARAMWISE_KEYS = (*MULT_KEYS, *FLAG_KEYS, "custom_keys")

NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._BatchNorm,
                                nn.modules.instancenorm._InstanceNorm,
                                nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)
# deformable convs (mmcv's) are recognised by class name, so mmcv is never imported.
DCN_CLASS_NAMES = frozenset({"DeformConv2d", "ModulatedDeformConv2d"})


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a normalisation layer (BatchNorm, InstanceNorm, GroupNorm,
    LayerNorm, RMSNorm)."""
    return isinstance(module, NORM_TYPES)


def is_dwconv(module: nn.Module) -> bool:
    """Whether ``module`` is a depthwise ``Conv2d`` (MMEngine's test: ``in_channels == groups``)."""
    return isinstance(module, nn.Conv2d) and module.in_channels == module.groups


def is_dcn(module: nn.Module) -> bool:
    """Whether ``module`` is a deformable conv (a class named like mmcv's in its MRO)."""
    return any(cls.__name__ in DCN_CLASS_NAMES for cls in type(module).__mro__)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class ParamwiseConfigError(ConfigError, TypeError):
    """Every ``paramwise_cfg`` problem in one report.

    A ``ConfigError`` (the ``ValueError`` MMEngine raises for a decay multiplier without
    ``weight_decay``) that is also the ``TypeError`` it raises for a ``custom_keys`` that
    is not a dict, so ported ``except`` clauses still catch it.
    """


@dataclass(frozen=True)
class ParamwiseRules:
    """A validated ``paramwise_cfg`` together with the optimizer's base ``lr`` and ``weight_decay``.

    Build it with :meth:`from_cfg`; :meth:`decide` gives one parameter's settings.
    """

    base_lr: float | None = None
    base_wd: float | None = None
    mults: dict[str, float] = field(default_factory=dict)
    custom_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    bypass_duplicate: bool = False
    merge_groups: bool = False
    strict_custom_keys: bool = False

    @classmethod
    def from_cfg(cls, paramwise_cfg: Mapping[str, Any] | None, optimizer_cfg: Mapping[str, Any],
                 extra_keys: tuple[str, ...] = ()) -> ParamwiseRules:
        """Validate ``paramwise_cfg`` against the optimizer config; report every problem at once.

        Args:
            paramwise_cfg: The ``paramwise_cfg`` dict (plain containers), or None.
            optimizer_cfg: The optimizer config (its ``lr`` and ``weight_decay`` are the bases).
            extra_keys: Further keys a constructor subclass understands (kept, not checked).

        Returns:
            The rules.

        Raises:
            ParamwiseConfigError: Unknown keys, values of the wrong type, or multipliers
                whose base (``lr`` / ``weight_decay``) the optimizer config does not set.
        """
        cfg = dict(paramwise_cfg or {})
        base_lr, base_wd = optimizer_cfg.get("lr"), optimizer_cfg.get("weight_decay")
        problems = _key_problems(cfg, extra_keys) + _custom_key_problems(cfg.get("custom_keys", {}))
        for key in MULT_KEYS:
            if key in cfg and not _is_number(cfg[key]):
                problems.append(f"paramwise_cfg.{key}: expected a number, got {cfg[key]!r}")
        for key in FLAG_KEYS:
            if key in cfg and not isinstance(cfg[key], bool):
                problems.append(f"paramwise_cfg.{key}: expected true or false, got {cfg[key]!r}")
        problems += _base_problems(cfg, base_lr, base_wd, optimizer_cfg)
        if "flat_decay_mult" in cfg and base_wd is None:  # MMEngine ignores it: so do we
            logger.warning("paramwise_cfg.flat_decay_mult=%r is ignored: the optimizer config "
                           "sets no weight_decay to multiply (as in MMEngine)",
                           cfg["flat_decay_mult"])
        if problems:
            raise ParamwiseConfigError(problems)
        custom = cfg.get("custom_keys") or {}
        return cls(base_lr=base_lr, base_wd=base_wd,
                   mults={k: cfg[k] for k in MULT_KEYS if k in cfg},
                   custom_keys={k: dict(v) for k, v in custom.items()},
                   bypass_duplicate=cfg.get("bypass_duplicate", False),
                   merge_groups=cfg.get("merge_groups", False),
                   strict_custom_keys=cfg.get("strict_custom_keys", False))

    @property
    def sorted_custom_keys(self) -> list[str]:
        """Custom keys in matching order: longest first, alphabetical among equals."""
        return sorted(sorted(self.custom_keys), key=len, reverse=True)

    def decide(self, name: str, param: torch.Tensor, module: nn.Module, prefix: str,
               in_dcn: bool | None) -> tuple[dict[str, Any], str]:
        """The settings of one parameter and the rule(s) that gave them.

        Args:
            name: The parameter's name inside ``module`` (e.g. ``'bias'``).
            param: The parameter.
            module: The module that owns it directly.
            prefix: ``module``'s dotted path in the model (``''`` for the root).
            in_dcn: Whether ``module`` is a child of a deformable conv.

        Returns:
            ``(settings, rule)``: the group keys besides ``params`` and a short text such
            as ``"custom_keys['head']"``, ``'bias_lr_mult+bias_decay_mult'`` or ``'default'``.
        """
        full_name = f"{prefix}.{name}"
        for key in self.sorted_custom_keys:
            if key in full_name:
                return self._custom_settings(key), f"custom_keys[{key!r}]"
        settings: dict[str, Any] = {}
        rules = []
        lr_rule = self._lr_rule(name, module, prefix, in_dcn)
        if lr_rule is not None:
            settings["lr"] = self.base_lr * self.mults[lr_rule]
            rules.append(lr_rule)
        wd_rule = self._decay_rule(name, param, module, in_dcn)
        if wd_rule is not None:
            settings["weight_decay"] = self.base_wd * self.mults[wd_rule]
            rules.append(wd_rule)
        return settings, "+".join(rules) or "default"

    def _custom_settings(self, key: str) -> dict[str, Any]:
        entry = self.custom_keys[key]
        settings: dict[str, Any] = {}
        if self.base_lr is not None:
            settings["lr"] = self.base_lr * entry.get("lr_mult", 1.0)
        if self.base_wd is not None:
            settings["weight_decay"] = self.base_wd * entry.get("decay_mult", 1.0)
        settings.update(entry)
        return settings

    def _lr_rule(self, name: str, module: nn.Module, prefix: str,
                 in_dcn: bool | None) -> str | None:
        rule = None
        if "bias_lr_mult" in self.mults and name == "bias" and not (is_norm(module) or in_dcn):
            rule = "bias_lr_mult"
        if ("dcn_offset_lr_mult" in self.mults and in_dcn and "conv_offset" in prefix
                and isinstance(module, nn.Conv2d)):
            rule = "dcn_offset_lr_mult"
        return rule

    def _decay_rule(self, name: str, param: torch.Tensor, module: nn.Module,
                    in_dcn: bool | None) -> str | None:
        if self.base_wd is None:
            return None
        candidates = (("norm_decay_mult", is_norm(module)),
                      ("bias_decay_mult", name == "bias" and not in_dcn),
                      ("dwconv_decay_mult", is_dwconv(module)),
                      ("flat_decay_mult", param.ndim == 1 and not in_dcn))
        return next((key for key, applies in candidates if applies and key in self.mults), None)


def _key_problems(cfg: Mapping[str, Any], extra_keys: tuple[str, ...]) -> list[str]:
    known = (*PARAMWISE_KEYS, *extra_keys)
    return [f"paramwise_cfg: unknown key {key!r}; {suggest(str(key), known)}"
            for key in cfg if key not in known]


def _custom_key_problems(custom: Any) -> list[str]:
    if not isinstance(custom, Mapping):
        return [f"paramwise_cfg.custom_keys: expected a dict of name -> settings, got {custom!r}"]
    problems = []
    for key, entry in custom.items():
        where = f"paramwise_cfg.custom_keys[{key!r}]"
        if not isinstance(key, str) or not key:
            problems.append(f"{where}: a key must be a non-empty string")
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a dict such as {{'lr_mult': 0.1}}, got {entry!r}")
            continue
        problems += [f"{where}.{mult}: expected a number, got {entry[mult]!r}"
                     for mult in ("lr_mult", "decay_mult")
                     if mult in entry and not _is_number(entry[mult])]
    return problems


def _base_problems(cfg: Mapping[str, Any], base_lr: Any, base_wd: Any,
                   optimizer_cfg: Mapping[str, Any]) -> list[str]:
    """Multipliers whose base value the optimizer config does not set."""
    needs = [(key, "weight_decay") for key in MULT_KEYS
             if key.endswith("decay_mult") and key != "flat_decay_mult"]  # that one: a warning
    needs += [(key, "lr") for key in MULT_KEYS if key.endswith("lr_mult")]
    used = [(f"paramwise_cfg.{key}", base) for key, base in needs if key in cfg]
    custom = cfg.get("custom_keys")
    if isinstance(custom, Mapping):
        for key, entry in custom.items():
            if isinstance(entry, Mapping):
                used += [(f"paramwise_cfg.custom_keys[{key!r}].{mult}", base)
                         for mult, base in (("lr_mult", "lr"), ("decay_mult", "weight_decay"))
                         if mult in entry]
    bases = {"lr": base_lr, "weight_decay": base_wd}
    shown = {k: v for k, v in optimizer_cfg.items() if k not in ("params", "model_params")}
    return [f"{where} multiplies the optimizer's {base}, but the optimizer config {shown!r} "
            f"sets no {base}; add {base}=... to the optimizer config"
            for where, base in used if bases[base] is None]


def merge_param_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge parameter groups whose settings (every key but ``params``) are equal.

    Every parameter keeps exactly its settings; groups come in the order of their first
    parameter and parameters keep their order.

    Args:
        groups: Parameter-group dicts, each with a ``params`` list.

    Returns:
        New group dicts (the input is not modified).

    Example:
        >>> merge_param_groups([{'params': [1], 'lr': 0.1}, {'params': [2], 'lr': 0.2},
        ...                     {'params': [3], 'lr': 0.1}])
        [{'params': [1, 3], 'lr': 0.1}, {'params': [2], 'lr': 0.2}]
    """
    merged: list[tuple[dict[str, Any], list[Any]]] = []
    for group in groups:
        settings = {k: v for k, v in group.items() if k != "params"}
        target = next((params for known, params in merged if known == settings), None)
        if target is None:
            merged.append((settings, list(group["params"])))
        else:
            target.extend(group["params"])
    return [{"params": params, **settings} for settings, params in merged]


__all__ = ["DCN_CLASS_NAMES", "NORM_TYPES", "PARAMWISE_KEYS", "ParamwiseRules", "is_dcn",
           "is_dwconv", "is_norm", "merge_param_groups"]
