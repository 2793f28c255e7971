"""Values checked by the component's own validation: a trial build on a tiny stand-in.

A signature says that ``lr`` is a float, not that ``-0.1`` is refused; the optimizer's
constructor knows that. Instead of repeating every component's rules here, the check
builds the component on a stand-in that costs nothing (one parameter of one element)
and turns a ``ValueError`` into a problem that names the key: the key whose value,
replaced by its default, makes the build succeed -- or that fails on its own. Only
components whose construction is known to be cheap and free of side effects are tried:
``torch.optim`` optimizers, accelwrap's optimizer wrappers (around a stand-in SGD, no
Accelerator), the schedulers of ``PARAM_SCHEDULERS`` (built by the runner's own
``build_param_schedulers`` on the config's optimizer) and, through
:func:`trial_problems`, whatever a caller vouches for (the runner's settings: its own
models on ``meta``, its bundled datasets). A failure that is not a refused value (a
missing library, no GPU here) is never reported.

Example:
    >>> optimizer_trial({'type': 'SGD', 'lr': -0.1, 'momentum': 0.9}, 'optim_wrapper.optimizer')
    ['optim_wrapper.optimizer.lr: -0.1 is refused by SGD: Invalid learning rate: -0.1 (lr \
defaults to 0.001)']
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from accelwrap.errors import RegistryError
from accelwrap.optim.optimizer.builder import SINGLE_KEYS
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper
from accelwrap.optim.scheduler.builder import build_param_schedulers
from accelwrap.registry import OPTIMIZERS, PARAM_SCHEDULERS, type_name

__all__ = ["optimizer_trial", "scheduler_trials", "stand_in_optimizer", "trial_problems",
           "wrapper_trial"]

# Errors a constructor raises for a value it refuses (ConfigError and accelwrap's
# assertion-compatible errors are ValueErrors too). Anything else -- a missing
# library, a device that is absent here -- says nothing about the config.
_REFUSED = (ValueError,)
# Building with every argument (their names and types already checked), a TypeError is
# a refused value too (``loss_scale: big``); with one argument alone it may only mean
# that a required one is missing.
_REFUSED_WHOLE = (ValueError, TypeError)


_OTHER = object()  # the build failed in a way that says nothing about the values


def _try(build: Callable[[dict], Any], args: dict, refused: tuple = _REFUSED) -> Any:
    """None when ``build(args)`` succeeds, the error when a value is refused, else ``_OTHER``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(args)
    except refused as err:
        return err
    except Exception:  # noqa: BLE001 - not a refused value (see _REFUSED): not reported
        return _OTHER
    return None


def _default_of(target: Callable, key: str) -> str:
    try:
        param = inspect.signature(target).parameters.get(key)
    except (TypeError, ValueError):
        return ""
    if param is None or param.default is param.empty or param.default is None:
        return ""
    return f" ({key} defaults to {param.default!r})"


def _reason(name: str, err: Exception) -> str:
    """The error's text without a leading ``'<name>: '`` (the problem names the type first)."""
    text = str(err)
    return text[len(name) + 2:] if text.startswith(f"{name}: ") else text


def trial_problems(target: Callable, build: Callable[[dict], Any], args: Mapping[str, Any],
                   path: str) -> list[str]:
    """Build ``target`` through ``build(args)``; name the keys of a refused value.

    A key is blamed when the build succeeds without it (its default in its place), or
    when it fails with that key alone. When no single key explains the refusal, the
    whole node is named.

    Args:
        target: The class being built (for its name and defaults).
        build: Builds it from keyword arguments, on a stand-in.
        args: The config's arguments (checked already for names and types).
        path: The dotted path of the node.

    Returns:
        One sentence per blamed key (empty when the build succeeds).

    Example:
        >>> def positive(width=1):
        ...     if width < 1:
        ...         raise ValueError(f'width must be >= 1, got {width}')
        >>> trial_problems(positive, lambda a: positive(**a), {'width': 0}, 'model')
        ['model.width: 0 is refused by positive: width must be >= 1, got 0 (width defaults to 1)']
    """
    args = dict(args)
    error = _try(build, args, _REFUSED_WHOLE)
    if not isinstance(error, Exception):
        return []
    name = type_name(target)
    blamed = _mentioned({key: error for key in args
                         if _try(build, {k: v for k, v in args.items() if k != key}) is None})
    if not blamed:
        alone = {key: _try(build, {key: value}) for key, value in args.items()}
        blamed = {key: err for key, err in alone.items() if isinstance(err, Exception)}
        # Its reason again beside the config's other (sound) values, not their defaults.
        for key in blamed:
            err = _try(build, {k: v for k, v in args.items() if k == key or k not in blamed})
            if isinstance(err, Exception):
                blamed[key] = err
    if not blamed:
        return [f"{path}: {name}({_call(args)}) is refused by {name}: {_reason(name, error)}"]
    return [_blame(target, path, key, args[key], _reason(name, err))
            for key, err in blamed.items()]


def _mentioned(blamed: dict[str, Exception]) -> dict[str, Exception]:
    """Of several blamed keys, those the error names (``begin``, not ``by_epoch``), if any.

    Leaving out a key can also succeed because its default changes the meaning (an
    iteration-based scheduler becomes epoch-based, with another default ``end``).
    """
    named = {key: err for key, err in blamed.items()
             if re.search(rf"\b{re.escape(key)}\b", str(err), re.IGNORECASE)}
    return named or blamed


def _blame(target: Callable, path: str, key: str, value: Any, reason: str) -> str:
    """The sentence for a refused ``key``; a reason about a deeper key names that key."""
    if reason.startswith((f"{key}.", f"{key}[")):
        return f"{path}.{reason}"
    reason = reason.removeprefix(f"{key}: ")
    return (f"{path}.{key}: {value!r} is refused by {type_name(target)}: {reason}"
            f"{_default_of(target, key)}")


def _call(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _stand_in_params() -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(torch.zeros(1))]  # zeros: no random number drawn


def _trial_optimizer_class(node: Any) -> type | None:
    """The optimizer class of ``node`` when a trial build is safe (``torch.optim``), else None."""
    if not isinstance(node, Mapping):
        return None
    try:
        target = OPTIMIZERS.get(node.get("type"))
    except (RegistryError, TypeError):
        return None
    if not isinstance(target, type) or not target.__module__.startswith("torch.optim"):
        return None
    return target


def optimizer_trial(node: Any, path: str) -> list[str]:
    """Problems a ``torch.optim`` optimizer's constructor finds in its config values.

    Args:
        node: The ``optimizer`` config (``type`` and arguments), checked for types already.
        path: Its dotted path.

    Returns:
        One sentence per refused value; empty for other optimizers (not tried).
    """
    target = _trial_optimizer_class(node)
    if target is None:
        return []
    args = {k: v for k, v in node.items() if k != "type"}
    return trial_problems(target, lambda a: target(_stand_in_params(), **a), args, path)


def wrapper_trial(wrapper: Any, node: Mapping, path: str) -> list[str]:
    """Problems an accelwrap optimizer wrapper's constructor finds in its settings.

    Built around a stand-in SGD (no Accelerator: binding to one happens at prepare), so
    ``clip_grad``, ``accumulative_counts``, an AMP ``dtype`` or ``loss_scale`` are judged
    by the wrapper's own parsers. A wrapper class from elsewhere is not tried.

    Args:
        wrapper: The wrapper class ``node['type']`` names.
        node: The wrapper's config (its ``optimizer`` and constructor keys are left out).
        path: Its dotted path.

    Returns:
        One sentence per refused value.

    Example:
        >>> from accelwrap.optim import OptimWrapper
        >>> wrapper_trial(OptimWrapper, {'accumulative_counts': 0}, 'optim_wrapper')[0][:68]
        'optim_wrapper.accumulative_counts: 0 is refused by OptimWrapper: acc'
    """
    if not isinstance(wrapper, type) or not wrapper.__module__.startswith("accelwrap."):
        return []
    args = {k: v for k, v in node.items() if k not in SINGLE_KEYS}

    def build(kwargs: dict) -> Any:
        return wrapper(optimizer=torch.optim.SGD(_stand_in_params(), lr=0.1), **kwargs)
    return trial_problems(wrapper, build, args, path)


def stand_in_optimizer(node: Any) -> torch.optim.Optimizer | None:
    """The config's optimizer built on one stand-in parameter, or None when not tried.

    When the config's values are refused (:func:`optimizer_trial` reports them), the
    same optimizer with its defaults stands in, so that its schedulers are still checked.

    Example:
        >>> stand_in_optimizer({'type': 'Adam', 'lr': 0.01}).defaults['lr']
        0.01
        >>> stand_in_optimizer({'type': 'Adam', 'lr': -1}).defaults['lr']
        0.001
    """
    target = _trial_optimizer_class(node)
    if target is None:
        return None
    for args in ({k: v for k, v in node.items() if k != "type"}, {}):
        try:
            return target(_stand_in_params(), **args)
        except Exception:  # noqa: BLE001 - optimizer_trial reports refused values
            continue
    return None


def scheduler_trials(node: Any, optimizer_cfg: Any, path: str,
                     run_length: tuple[int | None, int | None] = (None, None)) -> list[str]:
    """Problems the schedulers' constructors find, each built on the config's optimizer.

    Each is built by the runner's own ``build_param_schedulers`` (``on``, the default
    ``end``, ``convert_to_iter_based`` with a stand-in epoch length of 1).

    Args:
        node: One scheduler config or a list of them (names and types checked already).
        optimizer_cfg: The ``optimizer`` config they schedule; nothing is tried when it
            cannot be built on a stand-in (not a ``torch.optim`` optimizer, or refused).
        path: The dotted path of ``node``.
        run_length: ``(max_epochs, max_iters)``, the default ``end`` of epoch- and
            iteration-based schedulers where the run's length is known in those units.

    Returns:
        One sentence per refused value.

    Example:
        >>> scheduler_trials([{'type': 'MultiStepLR', 'milestones': [-1, 9]}],
        ...                  {'type': 'SGD', 'lr': 0.1}, 'param_scheduler')
        ['param_scheduler.0.milestones: [-1, 9] is refused by MultiStepLR: each milestone must be
          an integer >= 0, got -1']
    """
    if stand_in_optimizer(optimizer_cfg) is None:
        return []
    items = node if isinstance(node, list) else [node]
    problems = []
    for index, item in enumerate(items):
        where = f"{path}.{index}" if isinstance(node, list) else path
        if not isinstance(item, Mapping):
            continue
        try:
            target = PARAM_SCHEDULERS.get(item.get("type"))
        except (RegistryError, TypeError):
            continue

        def build(args: dict, item_type: Any = item.get("type")) -> Any:
            wrapper = OptimWrapper(stand_in_optimizer(optimizer_cfg))
            try:
                return build_param_schedulers([{"type": item_type, **args}], wrapper, 1,
                                              *run_length)
            except ValueError as err:  # the builder counts its own list of one
                raise ValueError(str(err).removeprefix("param_scheduler[0]: ")) from err
        args = {k: v for k, v in item.items() if k != "type"}
        problems += trial_problems(target, build, args, where)
    return problems
