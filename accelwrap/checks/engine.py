"""Every problem in a config, found without building anything costly.

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

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omegaconf import DictConfig

from accelwrap.checks.trial import optimizer_trial, scheduler_trials, wrapper_trial
from accelwrap.checks.value_types import value_problems
from accelwrap.errors import ConfigError, RegistryError, suggest
from accelwrap.optim.optimizer.builder import SINGLE_KEYS
from accelwrap.optim.optimizer.default_constructor import DefaultOptimWrapperConstructor
from accelwrap.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    Registry,
    signature_problems,
    to_plain,
    type_name,
)

__all__ = ["argument_problems", "check_component", "check_config", "check_optim_wrapper",
           "check_schedulers"]

# Arguments the builder passes at run time, never written in a config.
_RUNTIME = object()
# Keys the scheduler builder consumes before calling the class.
_SCHEDULER_BUILD_KEYS = ("convert_to_iter_based", "epoch_length", "on")
DEFAULT_CONSTRUCTOR = "DefaultOptimWrapperConstructor"


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
        if "type" in node:  # `type: null` (or an empty `type:` in YAML)
            return None, [f"{_join(path, 'type')}: None is not a name registered in "
                          f"{registry.name}; {suggest('', registry.keys())}"]
        return None, [f"{path}: no 'type' key; {suggest('', registry.keys())}"]
    try:
        target = registry.get(type_value)
    except (RegistryError, TypeError) as err:
        return None, [f"{_join(path, 'type')}: {err}"]
    skipped = {"type", *skip}
    args = {k: v for k, v in node.items() if k not in skipped}
    return target, argument_problems(target, args, path, runtime)


def argument_problems(target: Callable, args: Mapping[str, Any], path: str,
                      runtime: Iterable[str] = (), label: str | None = None) -> list[str]:
    """Unknown, missing and wrongly typed arguments of ``target(**args)``, each with its path.

    Args:
        target: The class or function the arguments are for.
        args: The arguments as written in the config.
        path: Dotted path of ``args`` in the config.
        runtime: Arguments the builder supplies itself.
        label: How messages name ``target`` (default: its name); ``''`` names nothing,
            for a signature that only lists a section's keys.

    Returns:
        One sentence per problem.

    Example:
        >>> import torch
        >>> argument_problems(torch.optim.SGD, {'lr': 'fast'}, 'optimizer', runtime=['params'])
        ["optimizer.lr: expected float | Tensor, got 'fast' (str) [SGD]"]
    """
    name = type_name(target) if label is None else label
    bound = {**args, **{key: _RUNTIME for key in runtime}}
    owner, tag = (f" ({name})", f" [{name}]") if name else ("", "")
    problems = [f"{path}{owner}: {p}" for p in signature_problems(target, bound)]
    problems += [f"{_join(path, key)}: {msg}{tag}" for key, msg in value_problems(target, args)]
    return problems


def _resolve_constructor(node: Mapping, path: str, problems: list[str]) -> Any:
    try:
        return OPTIM_WRAPPER_CONSTRUCTORS.get(node.get("constructor", DEFAULT_CONSTRUCTOR))
    except (RegistryError, TypeError) as err:
        problems.append(f"{_join(path, 'constructor')}: {err}")
        return None


def check_optim_wrapper(node: Any, path: str = "optim_wrapper") -> list[str]:
    """Check ``optim_wrapper`` in any of ``build_optim_wrapper``'s three forms.

    One wrapper (``optimizer`` given), members handed to a custom ``constructor``, or
    one wrapper config per model member (an ``OptimWrapperDict``).

    Args:
        node: The ``optim_wrapper`` section.
        path: Its dotted path.

    Returns:
        Every problem found.

    Example:
        >>> check_optim_wrapper({'optimizer': {'type': 'SGD', 'lr': 0.1}, 'clip_gard': {}})
        ["optim_wrapper (OptimWrapper): unexpected argument 'clip_gard';
          did you mean 'clip_grad'? ..."]
    """
    if not isinstance(node, Mapping) or not node:
        return [f"{path}: expected a dict such as {{optimizer: {{type: SGD, lr: 0.01}}}}, "
                f"got {node!r}"]
    if not any(key in node for key in SINGLE_KEYS):
        return [p for name, member in node.items()
                for p in check_optim_wrapper(member, _join(path, name))]
    problems: list[str] = []
    constructor_cls = _resolve_constructor(node, path, problems)
    if "optimizer" in node:
        return problems + _check_single(node, path, constructor_cls)
    if "constructor" not in node:
        return problems + [f"{path}: no 'optimizer' key (e.g. optimizer: {{type: SGD, lr: 0.01}})"]
    members = {k: v for k, v in node.items() if k not in SINGLE_KEYS}
    return problems + [p for name, member in members.items()
                       if isinstance(member, Mapping) and "optimizer" in member
                       for p in check_optim_wrapper(member, _join(path, name))]


def _check_single(node: Mapping, path: str, constructor_cls: Any) -> list[str]:
    """One wrapper: its type and arguments, the optimizer, and ``paramwise_cfg``."""
    wrapper, problems = check_component(node, OPTIM_WRAPPERS, path, runtime=("optimizer",),
                                         skip=SINGLE_KEYS, default_type="OptimWrapper")
    if not problems:
        problems += wrapper_trial(wrapper, node, path)  # clip_grad, accumulative_counts, ...
    optimizer, found = check_component(node["optimizer"], OPTIMIZERS, _join(path, "optimizer"),
                                       runtime=("params",))
    problems += found or optimizer_trial(node["optimizer"], _join(path, "optimizer"))
    if optimizer is not None and "paramwise_cfg" in node and isinstance(constructor_cls, type) \
            and issubclass(constructor_cls, DefaultOptimWrapperConstructor):
        problems += _paramwise_problems(constructor_cls, node, path)
    return problems


def _paramwise_problems(constructor_cls: type, node: Mapping, path: str) -> list[str]:
    """Let the constructor validate ``paramwise_cfg`` (cheap: no model, no optimizer built)."""
    wrapper_cfg = {k: v for k, v in node.items() if k not in ("constructor", "paramwise_cfg")}
    try:
        constructor_cls(wrapper_cfg, node["paramwise_cfg"])
    except ConfigError as err:
        return [_under(path, "paramwise_cfg", p) for p in err.problems]
    except (ValueError, TypeError, KeyError) as err:
        return [_under(path, "paramwise_cfg", str(err))]
    return []


def _under(path: str, key: str, text: str) -> str:
    """``text`` about ``key`` of the node at ``path``, the key named once (``a.key.sub: ...``)."""
    if text.startswith((f"{key}.", f"{key}:", f"{key}[")):
        return _join(path, text)
    return f"{_join(path, key)}: {text}"


def check_schedulers(node: Any, path: str = "param_scheduler") -> list[str]:
    """Check ``param_scheduler``: one config, a list, or a dict of lists per member.

    Args:
        node: The ``param_scheduler`` section.
        path: Its dotted path.

    Returns:
        Every problem found.

    Example:
        >>> check_schedulers([{'type': 'LinearLR'}, {'type': 'StepLR', 'step_size': 2,
        ...                                          'gamma': 'half'}])
        ["param_scheduler.1.gamma: expected float, got 'half' (str) [StepLR]"]
    """
    if node is None:
        return []
    if isinstance(node, Mapping) and "type" not in node:
        return [p for name, member in node.items()
                for p in check_schedulers(member, _join(path, name))]
    items = node if isinstance(node, list) else [node]
    problems = []
    for index, item in enumerate(items):
        where = _join(path, index) if isinstance(node, list) else path
        _, found = check_component(item, PARAM_SCHEDULERS, where, runtime=("optimizer",),
                                   skip=_SCHEDULER_BUILD_KEYS)
        problems += found
        convert = item.get("convert_to_iter_based", False) if isinstance(item, Mapping) else False
        if not isinstance(convert, bool):
            problems.append(f"{where}.convert_to_iter_based: expected true or false, "
                            f"got {convert!r}")
        elif convert and item.get("by_epoch") is False:
            problems.append(f"{where}: convert_to_iter_based=True needs an epoch-based "
                            "scheduler, but by_epoch is False")
    return problems


def check_config(cfg: Mapping | DictConfig,
                 sections: Mapping[str, Callable[[Any, str], list[str]]] | None = None,
                 known_keys: Iterable[str] = (),
                 run_length: tuple[int | None, int | None] = (None, None)) -> list[str]:
    """Return every problem in a config, without building anything costly.

    Args:
        cfg: The loaded config (overrides applied); not modified.
        sections: Top-level key -> checker; defaults to :func:`default_sections`.
        known_keys: Further valid top-level keys that have no checker.
        run_length: ``(max_epochs, max_iters)`` of the run where known: the schedulers'
            default ``end``, as the runner sets it.

    Returns:
        One sentence per problem (empty when the config is fine).

    Example:
        >>> check_config({'optim_wrapper': {'optimizer': {'type': 'SGD'}}, 'seed': 1})
        ["seed: unknown top-level key; valid names are 'optim_wrapper', 'param_scheduler'"]
    """
    plain = to_plain(cfg)
    sections = default_sections() if sections is None else sections
    known = set(known_keys) | set(sections)
    problems, found = [], {}
    for key, value in plain.items():
        if key not in known:
            problems.append(f"{key}: unknown top-level key; {suggest(key, known)}")
        elif key in sections:
            found[key] = sections[key](value, key)
            problems += found[key]
    members = _member_problems(plain)
    if not (members or found.get("param_scheduler")):
        members = _scheduler_values(plain, run_length)  # once names and types are right
    return problems + members


def _scheduler_values(cfg: Mapping[str, Any], run_length: tuple) -> list[str]:
    """Each scheduler built on its optimizer (a stand-in): values its constructor refuses."""
    schedulers, wrapper = cfg.get("param_scheduler"), cfg.get("optim_wrapper")
    if schedulers is None or not isinstance(wrapper, Mapping):
        return []
    if "optimizer" in wrapper:
        return scheduler_trials(schedulers, wrapper["optimizer"], "param_scheduler", run_length)
    if any(key in wrapper for key in SINGLE_KEYS) or not isinstance(schedulers, Mapping) \
            or "type" in schedulers:
        return []  # a custom constructor decides the members
    return [p for name, member in schedulers.items()
            if isinstance(wrapper.get(name), Mapping) and "optimizer" in wrapper[name]
            for p in scheduler_trials(member, wrapper[name]["optimizer"],
                                      f"param_scheduler.{name}", run_length)]


def _member_problems(cfg: Mapping[str, Any]) -> list[str]:
    """A per-member ``param_scheduler`` dict must name ``optim_wrapper``'s members."""
    schedulers, wrapper = cfg.get("param_scheduler"), cfg.get("optim_wrapper")
    if (not isinstance(schedulers, Mapping) or "type" in schedulers
            or not isinstance(wrapper, Mapping)):
        return []
    if any(key in wrapper for key in SINGLE_KEYS):
        if "optimizer" not in wrapper:
            return []  # a custom constructor decides the members
        return [f"param_scheduler: a dict of scheduler lists ({sorted(schedulers)}) needs one "
                "optim_wrapper config per member, but optim_wrapper builds a single wrapper"]
    return [f"param_scheduler.{name}: not a member of optim_wrapper; {suggest(str(name), wrapper)}"
            for name in schedulers if name not in wrapper]


def default_sections() -> dict[str, Callable[[Any, str], list[str]]]:
    """Top-level key -> checker for the optimizer sections (the runner adds its own)."""
    return {"optim_wrapper": check_optim_wrapper, "param_scheduler": check_schedulers}
