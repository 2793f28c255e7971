"""``accelwrap groups``: which learning rate and weight decay every parameter will get, and why.

The rows come from the optimizer wrapper constructor's own ``describe(model)`` -- the
same rules ``build_optim_wrapper`` applies -- over the config's model built on the
``meta`` device. For an ``OptimWrapperDict`` config (one wrapper config per model
member) each member's rows are prefixed with the member name. A ``custom_keys`` entry
that matches no parameter is a warning, as it is when training (an error with
``paramwise_cfg.strict_custom_keys: true``); :func:`unmatched_custom_keys` lists them
for ``accelwrap check``. A parameter reached under several names (a shared module) is
one tensor: its later names are labelled ``shared with <first name>``, carry the first
name's settings, and the totals count it once.

Example:
    >>> rows = param_rows({'model': {'type': 'MLPClassifier', 'hidden_dims': [8], 'norm': True},
    ...                    'optim_wrapper': {'optimizer': {'type': 'SGD', 'lr': 0.1,
    ...                                                    'weight_decay': 1e-4},
    ...                                      'paramwise_cfg': {'norm_decay_mult': 0.0}}})
    >>> [(r.name, r.settings['weight_decay'], r.rule) for r in rows[''][2:3]]
    [('net.1.weight', 0.0, 'norm_decay_mult')]
"""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from accelwrap.optim.optimizer.builder import SINGLE_KEYS
from accelwrap.optim.optimizer.default_constructor import (
    ParamRow,
    named_params_with_owner,
    unwrap_model,
)
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS
from accelwrap.tools.common import build_model_cheaply, load_plain, render_table, require

__all__ = ["format_table", "param_rows", "run_groups", "unmatched_custom_keys",
           "wrapper_configs"]

_FIRST_KEYS = ("lr", "weight_decay")


def _constructor(cfg: Mapping[str, Any]) -> Any:
    """The constructor one wrapper config names, built as ``build_optim_wrapper`` builds it."""
    wrapper_cfg = {k: v for k, v in cfg.items() if k not in ("constructor", "paramwise_cfg")}
    return OPTIM_WRAPPER_CONSTRUCTORS.build({
        "type": cfg.get("constructor", "DefaultOptimWrapperConstructor"),
        "optim_wrapper_cfg": wrapper_cfg, "paramwise_cfg": cfg.get("paramwise_cfg")})


def wrapper_configs(optim_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``{member: its wrapper config}`` of an ``optim_wrapper`` section; ``''`` for one wrapper.

    Example:
        >>> list(wrapper_configs({'optimizer': {'type': 'SGD'}})), list(wrapper_configs(
        ...     {'gen': {'optimizer': {}}, 'disc': {'optimizer': {}}}))
        ([''], ['gen', 'disc'])
    """
    if any(key in optim_cfg for key in SINGLE_KEYS):
        return {"": optim_cfg}
    return dict(optim_cfg)


def _wrappers(cfg: Mapping[str, Any], model: nn.Module) -> dict[str, tuple[nn.Module, Mapping]]:
    """``{member: (the module it optimizes, its wrapper config)}``; ``''`` for one wrapper."""
    configs = wrapper_configs(cfg["optim_wrapper"])
    if "" in configs:
        return {"": (model, configs[""])}
    children = dict(model.named_children())
    missing = [name for name in configs if name not in children]
    if missing:
        raise ValueError(f"optim_wrapper.{missing[0]}: the model has no submodule "
                         f"{missing[0]!r} (it has {sorted(children)})")
    return {name: (children[name], member_cfg) for name, member_cfg in configs.items()}


def unmatched_custom_keys(cfg: Mapping[str, Any],
                          model: nn.Module) -> tuple[list[str], list[str]]:
    """Every ``custom_keys`` entry of the config that matches no parameter of ``model``.

    Args:
        cfg: A config with ``optim_wrapper``.
        model: The model (built on ``meta`` is enough).

    Returns:
        ``(errors, warnings)``: one sentence per entry, prefixed with
        ``optim_wrapper[.member]``; errors are those of wrappers whose ``paramwise_cfg``
        sets ``strict_custom_keys: true``.

    Example:
        >>> cfg = {'optim_wrapper': {'optimizer': {'type': 'SGD', 'lr': 0.1},
        ...        'paramwise_cfg': {'custom_keys': {'haed': {'lr_mult': 0.1}}}}}
        >>> errors, notes = unmatched_custom_keys(cfg, nn.Linear(2, 2))
        >>> errors, notes[0][:47]
        ([], "optim_wrapper.paramwise_cfg.custom_keys['haed']")
    """
    errors: list[str] = []
    notes: list[str] = []
    for member, (module, member_cfg) in _wrappers(cfg, model).items():
        find = getattr(_constructor(member_cfg), "unmatched_custom_keys", None)
        prefix = f"optim_wrapper.{member}." if member else "optim_wrapper."
        strict = (member_cfg.get("paramwise_cfg") or {}).get("strict_custom_keys", False)
        (errors if strict else notes).extend(
            prefix + sentence for sentence in (find(module) if find else []))
    return errors, notes


def _constructor_rows(model: nn.Module, cfg: Mapping[str, Any]) -> list[ParamRow]:
    """Rows of one wrapper config (forms 1 and 2 of ``build_optim_wrapper``)."""
    constructor = _constructor(cfg)
    describe = getattr(constructor, "describe", None)
    if not callable(describe):
        raise TypeError(f"optim_wrapper.constructor: {type(constructor).__name__} has no "
                        "describe(model) method, so its parameter groups cannot be listed; "
                        "subclass DefaultOptimWrapperConstructor or add describe()")
    defaults = _signature_defaults(cfg.get("optimizer"))
    rows = [replace(row, settings={**defaults, **row.settings}) if row.settings else row
            for row in describe(model)]
    return _label_shared(rows, model)


SHARED = "shared with "


def _label_shared(rows: list[ParamRow], model: nn.Module) -> list[ParamRow]:
    """Later names of a shared parameter: ``shared with <first>`` and the first's settings."""
    first: dict[int, str] = {}
    first_of = {name: first.setdefault(id(param), name)
                for name, param, _ in named_params_with_owner(unwrap_model(model))}
    by_name = {row.name: row for row in rows}
    out = []
    for row in rows:
        origin = first_of.get(row.name, row.name)
        if origin != row.name and origin in by_name:
            row = replace(row, settings=by_name[origin].settings, rule=SHARED + repr(origin))
        out.append(row)
    return out


def _signature_defaults(optimizer_cfg: Any) -> dict[str, Any]:
    """The optimizer's own ``lr`` / ``weight_decay`` defaults, shown where the config sets none."""
    if not isinstance(optimizer_cfg, Mapping) or "type" not in optimizer_cfg:
        return {}
    try:
        params = inspect.signature(OPTIMIZERS.get(optimizer_cfg["type"])).parameters
    except (TypeError, ValueError):
        return {}
    return {k: params[k].default for k in _FIRST_KEYS
            if k in params and isinstance(params[k].default, (int, float))}


def param_rows(cfg: Mapping[str, Any], model: nn.Module | None = None) -> dict[str, list[ParamRow]]:
    """One row per parameter: name, shape, module type, settings, deciding rule.

    Args:
        cfg: A config with ``model`` (unless ``model`` is given) and ``optim_wrapper``.
        model: A built model to use instead of building ``cfg['model']``.

    Returns:
        Rows in model order keyed by ``OptimWrapperDict`` member (``''`` for a single
        wrapper); members' row names are prefixed with the member name.

    Raises:
        ValueError: A member is not a submodule, a ``custom_keys`` entry matches nothing
            under ``strict_custom_keys``, or another rule the constructor enforces is broken.
    """
    model = build_model_cheaply(cfg["model"]) if model is None else model
    return {member: [replace(row, name=f"{member}.{row.name}") if member else row
                     for row in _constructor_rows(module, member_cfg)]
            for member, (module, member_cfg) in _wrappers(cfg, model).items()}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _setting_columns(rows: list[ParamRow]) -> tuple[list[str], list[str]]:
    """Columns for ``lr``/``weight_decay``, plus the other keys whose value varies."""
    keys = sorted({k for row in rows for k in row.settings})
    first = [k for k in _FIRST_KEYS if k in keys]
    varying = [k for k in keys if k not in first and
               len({repr(row.settings.get(k)) for row in rows if row.settings}) > 1]
    return first, varying


def format_table(rows_by_member: Mapping[str, list[ParamRow]], merged: bool = False) -> str:
    """The table ``accelwrap groups`` prints, with a totals section.

    Args:
        rows_by_member: From :func:`param_rows`.
        merged: One line per distinct (settings, rule) instead of one per parameter.

    Returns:
        The text, lines separated by newlines.
    """
    rows = [row for member in rows_by_member.values() for row in member]
    first, varying = _setting_columns(rows)
    header = ["parameter", "shape", "module", *first, *varying, "rule"]
    if merged:
        header[:3] = ["parameters", "tensors", "numel"]
        body = [[_names(group), str(len(group)), f"{_numel(group):,}",
                 *(_fmt(group[0].settings.get(k, "-")) for k in (*first, *varying)),
                 group[0].rule]
                for member in rows_by_member.values() for group in _by_settings(member, True)]
    else:
        body = [[row.name, "x".join(map(str, row.shape)) or "scalar", row.module_type,
                 *(_fmt(row.settings.get(k, "-")) for k in (*first, *varying)), row.rule]
                for row in rows]
    totals = [line for name, member in rows_by_member.items() for line in _totals(member, name)]
    return "\n".join([*render_table(header, body), "", *totals])


def _by_settings(rows: Iterable[ParamRow], with_rule: bool) -> list[list[ParamRow]]:
    groups: dict[str, list[ParamRow]] = {}
    for row in rows:
        key = repr(sorted(row.settings.items())) + (row.rule if with_rule else "")
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def _numel(rows: Iterable[ParamRow]) -> int:
    return sum(math.prod(row.shape) for row in rows)


def _names(rows: list[ParamRow], shown: int = 3) -> str:
    names = ", ".join(row.name for row in rows[:shown])
    return names + (f", ... (+{len(rows) - shown})" if len(rows) > shown else "")


def _totals(rows: list[ParamRow], member: str) -> list[str]:
    """One line per distinct setting (what the optimizer sees), then frozen and all."""
    shared = [row for row in rows if row.rule.startswith(SHARED)]
    rows = [row for row in rows if not row.rule.startswith(SHARED)]
    trainable = [row for row in rows if row.settings]
    frozen = [row for row in rows if not row.settings]
    lines = [f"totals{f' of {member}' if member else ''}:"]
    for index, group in enumerate(_by_settings(trainable, with_rule=False)):
        settings = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(group[0].settings.items()))
        lines.append(f"  setting {index}: {len(group)} tensors, {_numel(group):,} parameters "
                     f"({settings})")
    lines.append(f"  not optimized: {len(frozen)} tensors, {_numel(frozen):,} parameters")
    if shared:
        lines.append(f"  shared: {len(shared)} more names of tensors counted once above")
    lines.append(f"  all: {len(rows)} tensors, {_numel(rows):,} parameters "
                 f"({_numel(trainable):,} optimized)")
    return lines


def run_groups(path: str, overrides: Iterable[str] = (), merged: bool = False) -> int:
    """The ``accelwrap groups`` command: print the table, return the exit status.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.
        merged: One line per distinct setting instead of one per parameter.

    Returns:
        0 (errors raise and are reported by the command line).
    """
    cfg = load_plain(path, overrides)
    require(cfg, "model", "optim_wrapper", command="groups")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = format_table(param_rows(cfg), merged=merged)
    for warning in caught:
        print(f"accelwrap groups: warning: {warning.message}", file=sys.stderr)
    print(table)
    return 0
