"""``accelwrap check``: every problem in a config, found without building anything costly.

Each ``type`` is looked up in the registry that will build it, each argument is bound
against the target's signature (unknown, missing, and values of the wrong type), and
unknown top-level keys are named. All problems come back together, each with its
dotted path, so one run is enough to fix a config.

Example:
    >>> problems = check_config({'optim_wrapper': {'optimizer': {'type': 'SDG', 'lr': 0.1}}})
    >>> problems[0]
    "optim_wrapper.optimizer.type: 'SDG' is not registered in OPTIMIZERS; did you mean 'SGD'?"
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omegaconf import DictConfig

from accelwrap.errors import ConfigError, RegistryError, suggest
from accelwrap.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS,
                                PARAM_SCHEDULERS, Registry, signature_problems, to_plain,
                                type_name)
from accelwrap.tools.value_types import value_problems

__all__ = ["check_component", "check_config", "run_check"]

# Arguments the builder passes at run time, never written in a config.
_RUNTIME = object()
# Keys the scheduler builder consumes before calling the class.
_SCHEDULER_BUILD_KEYS = ("convert_to_iter_based", "epoch_length")
# Keys build_optim_wrapper / the constructor consume before building the wrapper class.
_CONSTRUCTOR_KEYS = ("constructor", "optimizer", "paramwise_cfg")


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def check_component(node: Any, registry: Registry, path: str,
                    runtime: Iterable[str] = (), skip: Iterable[str] = (),
                    default_type: str | None = None) -> tuple[Any, list[str]]:
    """Check one ``type=...`` config node: its type, argument names and value types.

    Args:
        node: The config node (a mapping with ``type``).
        registry: The registry that builds it.
        path: Its dotted path in the config, used in every message.
        runtime: Arguments the builder supplies itself (``params``, ``optimizer``).
        skip: Keys of ``node`` that are consumed before the target is called.
        default_type: The type used when ``node`` has no ``type`` key.

    Returns:
        ``(target, problems)``; ``target`` is None when the type did not resolve.
    """
    if not isinstance(node, Mapping):
        return None, [f"{path}: expected a mapping with a 'type' key, got {node!r}"]
    type_value = node.get("type", default_type)
    if type_value is None:
        return None, [f"{path}: no 'type' key; {suggest('', registry.keys())}"]
    try:
        target = registry.get(type_value)
    except (RegistryError, TypeError) as err:
        return None, [f"{_join(path, 'type')}: {err}"]
    skipped = {"type", *skip}
    args = {k: v for k, v in node.items() if k not in skipped}
    where = f"{path} ({type_name(target)})"
    bound = {**args, **{name: _RUNTIME for name in runtime}}
    problems = [f"{where}: {p}" for p in signature_problems(target, bound)]
    problems += [f"{_join(path, name)}: {msg} [{type_name(target)}]"
                 for name, msg in value_problems(target, args)]
    return target, problems


def check_optimizer_config(node: Any, path: str) -> list[str]:
    """Check an ``OptimWrapper`` config: wrapper, constructor, optimizer, paramwise_cfg.

    Args:
        node: ``dict(type=..., optimizer=dict(...), paramwise_cfg=..., constructor=...)``.
        path: Its dotted path.

    Returns:
        Every problem found.
    """
    if not isinstance(node, Mapping):
        return [f"{path}: expected a mapping with an 'optimizer' key, got {node!r}"]
    problems: list[str] = []
    constructor = node.get("constructor", "DefaultOptimWrapperConstructor")
    try:
        constructor_cls = OPTIM_WRAPPER_CONSTRUCTORS.get(constructor)
    except (RegistryError, TypeError) as err:
        constructor_cls = None
        problems.append(f"{_join(path, 'constructor')}: {err}")
    _, wrapper = check_component(node, OPTIM_WRAPPERS, path, runtime=("optimizer",),
                                 skip=_CONSTRUCTOR_KEYS, default_type="OptimWrapper")
    problems += wrapper
    if "optimizer" not in node:
        problems.append(f"{path}: no 'optimizer' key (e.g. optimizer: {{type: SGD, lr: 0.01}})")
    else:
        _, optim = check_component(node["optimizer"], OPTIMIZERS, _join(path, "optimizer"),
                                   runtime=("params",))
        problems += optim
    if constructor_cls is not None:
        problems += _constructor_problems(constructor_cls, node, path)
    return problems


def _constructor_problems(constructor_cls: Callable, node: Mapping, path: str) -> list[str]:
    """Let the constructor validate ``paramwise_cfg`` (cheap: no model, no optimizer)."""
    if "paramwise_cfg" not in node:
        return []
    wrapper_cfg = {k: v for k, v in node.items() if k not in ("constructor", "paramwise_cfg")}
    try:
        constructor_cls(wrapper_cfg, node["paramwise_cfg"])
    except (ValueError, TypeError, KeyError) as err:
        return [f"{_join(path, 'paramwise_cfg')}: {err}"]
    return []


def _each_member(node: Mapping, path: str, check: Callable[[Any, str], list[str]]) -> list[str]:
    """Run ``check`` on every ``OptimWrapperDict`` member of a section (not ``constructor``)."""
    return [problem for name, member in node.items() if name != "constructor"
            for problem in check(member, _join(path, name))]


def check_optim_wrapper(node: Any, path: str = "optim_wrapper") -> list[str]:
    """Check ``optim_wrapper``: one wrapper config, or one per ``OptimWrapperDict`` member.

    Args:
        node: The ``optim_wrapper`` section.
        path: Its dotted path.

    Returns:
        Every problem found.
    """
    if isinstance(node, Mapping) and "optimizer" not in node and node \
            and all(isinstance(v, Mapping) for k, v in node.items() if k != "constructor"):
        return _each_member(node, path, check_optimizer_config)
    return check_optimizer_config(node, path)


def check_schedulers(node: Any, path: str = "param_scheduler") -> list[str]:
    """Check ``param_scheduler``: one config, a list, or a dict of lists per member.

    Args:
        node: The ``param_scheduler`` section.
        path: Its dotted path.

    Returns:
        Every problem found.
    """
    if node is None:
        return []
    if isinstance(node, Mapping) and "type" not in node:
        return _each_member(node, path, check_schedulers)
    items = node if isinstance(node, list) else [node]
    problems = []
    for index, item in enumerate(items):
        where = _join(path, index) if isinstance(node, list) else path
        _, found = check_component(item, PARAM_SCHEDULERS, where, runtime=("optimizer",),
                                   skip=_SCHEDULER_BUILD_KEYS)
        problems += found
        if isinstance(item, Mapping) and item.get("convert_to_iter_based") \
                and item.get("by_epoch") is False:
            problems.append(f"{where}: convert_to_iter_based=True needs an epoch-based "
                            "scheduler, but by_epoch is False")
    return problems


def check_config(cfg: Mapping | DictConfig,
                 sections: Mapping[str, Callable[[Any, str], list[str]]] | None = None,
                 known_keys: Iterable[str] | None = None) -> list[str]:
    """Return every problem in a training config, without building anything costly.

    Args:
        cfg: The loaded config (overrides applied); not modified.
        sections: Top-level key -> checker; defaults to :func:`default_sections`.
        known_keys: Every valid top-level key; defaults to the runner's.

    Returns:
        One sentence per problem (empty when the config is fine).
    """
    plain = to_plain(cfg)
    sections = default_sections() if sections is None else sections
    known = set(known_top_level_keys() if known_keys is None else known_keys) | set(sections)
    problems = []
    for key, value in plain.items():
        if key not in known:
            problems.append(f"{key}: unknown top-level key; {suggest(key, known)}")
        elif key in sections:
            problems += sections[key](value, key)
    return problems


def default_sections() -> dict[str, Callable[[Any, str], list[str]]]:
    """Top-level key -> checker for the sections whose contents are registry-built."""
    return {"optim_wrapper": check_optim_wrapper, "param_scheduler": check_schedulers}


def known_top_level_keys() -> set[str]:
    """The top-level keys the runner understands."""
    return set(default_sections())


def run_check(path: str, overrides: Iterable[str] = ()) -> int:
    """The ``accelwrap check`` command: print every problem, return the exit status.

    Args:
        path: The config file.
        overrides: Dotted ``key=value`` overrides.

    Returns:
        0 when the config is fine, 1 when anything is wrong (problems go to stderr).
    """
    from accelwrap.config import load_config

    try:
        problems = check_config(load_config(path, overrides))
    except ConfigError as err:
        problems = err.problems
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        return 1
    print(f"{path}: no problems found")
    return 0
