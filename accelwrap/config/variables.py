"""Config variables: helper keys referred to by ``${...}``, and the ``${calc:...}`` resolver.

A top-level key that something refers to (``lr: ${base_lr}``) is a helper variable, as a
Python config's ``base_lr = 0.01`` is: :func:`resolve_config` resolves every reference
and drops the helpers, so the loaded (and saved) config holds plain values. A top-level
key nothing refers to stays, and the runner reports it (a typo). ``${calc:...}`` does
arithmetic: numbers, ``+ - * / // % **`` and parentheses (``${calc:${base_lr} * 0.05}``,
``${calc:(${max_epochs} - 10) // 2}``), parsed with :mod:`ast`, never evaluated as Python.
Importing this module registers ``calc`` in OmegaConf's resolver registry (replacing an
earlier registration of the same name); it changes nothing else.

Example:
    >>> cfg = OmegaConf.create(quote_calc({'base_lr': 0.01, 'optim': {'lr': '${base_lr}',
    ...                                    'min_lr': '${calc:${base_lr} * 0.05}'}}))
    >>> resolve_config(cfg)
    {'optim': {'lr': 0.01, 'min_lr': 0.0005}}
"""

from __future__ import annotations

import ast
import inspect
import operator
import re
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from accelwrap.errors import ConfigError

__all__ = ["SECTIONS", "calc", "helper_keys", "quote_calc", "resolve_config"]

#: Top-level keys that are config sections (accelwrap's and MMEngine's), never helper
#: variables, even when something refers to them (``${train_cfg.max_epochs}``).
SECTIONS = frozenset((
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader",
    "val_evaluator", "test_evaluator", "optim_wrapper", "param_scheduler", "train_cfg",
    "val_cfg", "test_cfg", "default_hooks", "custom_hooks", "randomness", "resume", "load_from",
    "accelerator", "experiment_name", "auto_scale_lr", "custom_imports", "default_scope",
    "env_cfg", "visualizer", "vis_backends", "log_processor", "launcher", "log_level"))

_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
              ast.Pow: operator.pow, ast.USub: operator.neg, ast.UAdd: operator.pos}
_MAX_EXPONENT = 1024


def _arithmetic(node: ast.AST, text: str) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.operand, text))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _arithmetic(node.left, text), _arithmetic(node.right, text)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ValueError(f"calc: {text!r}: exponent {right!r} is too large")
        return _OPERATORS[type(node.op)](left, right)
    raise ValueError(f"calc: {text!r} is not arithmetic on numbers: {ast.unparse(node)!r} is not "
                     "allowed (numbers, + - * / // % **, parentheses)")


def calc(expression: Any) -> int | float:
    """The ``${calc:...}`` resolver: arithmetic on numbers, parsed with :mod:`ast`.

    Args:
        expression: The text after ``calc:`` with its interpolations resolved (or a number).

    Returns:
        The value: an ``int`` where Python's arithmetic gives one (``210 // 2``).

    Raises:
        ValueError: Anything but numbers, ``+ - * / // % **`` and parentheses, or a
            division by zero.

    Example:
        >>> calc('0.01 * 0.05'), calc('(210 - 10) // 2'), calc('2 ** -1')
        (0.0005, 100, 0.5)
        >>> cfg = OmegaConf.create(quote_calc({'lr': 0.1, 'min': '${calc:${lr} / 10}'}))
        >>> cfg.min
        0.01
    """
    if type(expression) in (int, float):
        return expression
    text = str(expression).strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"calc: {text!r} is not an arithmetic expression ({err.msg})") from None
    try:
        return _arithmetic(tree.body, text)
    except (ZeroDivisionError, OverflowError) as err:
        raise ValueError(f"calc: {text!r}: {err}") from None


def _register_calc() -> None:
    """Register ``calc`` with OmegaConf: ``register_resolver`` where it takes ``replace``
    (2.4, which deprecates ``register_new_resolver``), else ``register_new_resolver`` (2.3)."""
    if "replace" in inspect.signature(OmegaConf.register_resolver).parameters:
        OmegaConf.register_resolver("calc", calc, replace=True)
    else:
        OmegaConf.register_new_resolver("calc", calc, replace=True)


_register_calc()


def _quote_one(text: str) -> str:
    """Quote the argument of every ``${calc:...}`` in ``text`` (OmegaConf's grammar refuses
    parentheses in a bare argument; a quoted one may still hold ``${...}``)."""
    out, start = [], 0
    while (found := text.find("${calc:", start)) >= 0:
        begin = found + len("${calc:")
        depth, end = 1, begin
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        if depth:
            break  # unbalanced: OmegaConf reports it
        argument = text[begin:end - 1]
        quote = next((q for q in "'\"" if q not in argument), None)
        if argument.strip()[:1] not in ("'", '"') and quote and "${calc:" not in argument:
            argument = quote + argument.strip() + quote
        out.append(text[start:begin] + argument + "}")
        start = end
    return "".join(out) + text[start:]


def quote_calc(value: Any) -> Any:
    """``value`` with the argument of every ``${calc:...}`` quoted, at any depth.

    OmegaConf's grammar refuses parentheses in a bare resolver argument; a quoted one
    may still hold ``${...}``. Config files and overrides go through this before
    OmegaConf sees them.

    Example:
        >>> quote_calc({'a': ['${calc:(${b} + 1) * 2}']})
        {'a': ["${calc:'(${b} + 1) * 2'}"]}
    """
    if isinstance(value, str):
        return _quote_one(value) if "${calc:" in value else value
    if isinstance(value, dict):
        return {k: quote_calc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [quote_calc(v) for v in value]
    return value


# ``${name...}`` (an absolute reference) or ``${resolver:...}`` (the second group is ':').
_REFERENCE = re.compile(r"\$\{\s*([A-Za-z_][\w.\[\]]*)\s*([:}])")


def helper_keys(cfg: DictConfig | Mapping) -> list[str]:
    """Top-level keys other keys refer to (``${base_lr}``) that are not :data:`SECTIONS`.

    Args:
        cfg: The config, interpolations not yet resolved.

    Returns:
        The helper variables' names, in config order.

    Example:
        >>> helper_keys({'base_lr': 0.1, 'optim_wrapper': {'optimizer': {'lr': '${base_lr}'}},
        ...              'train_cfg': {'max_epochs': 3}, 'param_scheduler': {'end':
        ...              '${train_cfg.max_epochs}'}, 'optim_wraper': {}})
        ['base_lr']
    """
    plain = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    referenced: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str):
            referenced.update(re.split(r"[.\[]", m.group(1))[0] for m in _REFERENCE.finditer(node)
                              if m.group(2) == "}")
        elif isinstance(node, Mapping):
            for value in node.values():
                walk(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value)

    walk(plain)
    return [k for k in plain if k in referenced and k not in SECTIONS]


def resolve_config(cfg: DictConfig) -> DictConfig:
    """Resolve every ``${...}`` and drop the helper variables (:func:`helper_keys`).

    Args:
        cfg: The config; not modified.

    Returns:
        A new config holding plain values only.

    Raises:
        ConfigError: Every interpolation that does not resolve, one per top-level key.

    Example:
        >>> cfg = OmegaConf.create({'max_epochs': 12, 'train_cfg': {
        ...     'max_epochs': '${max_epochs}', 'val_interval': "${calc:'${max_epochs} // 4'}"}})
        >>> resolve_config(cfg)
        {'train_cfg': {'max_epochs': 12, 'val_interval': 3}}
    """
    helpers = set(helper_keys(cfg))
    out, problems = {}, []
    for key in cfg:
        try:
            value = cfg[key]
            value = OmegaConf.to_container(value, resolve=True) \
                if isinstance(value, (DictConfig, ListConfig)) else value
        except OmegaConfBaseException as err:
            cause = err.__cause__ if isinstance(err.__cause__, ValueError) else err
            problems.append(f"{key}: {str(cause).splitlines()[0]}")
            continue
        if key not in helpers:
            out[key] = value
    if problems:
        raise ConfigError(problems)
    return OmegaConf.create(out)

