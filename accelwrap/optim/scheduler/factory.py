"""``make_scheduler``: a family and a ``param_name`` binding -> a registered scheduler class.

A family (:mod:`~accelwrap.optim.scheduler.families`, :mod:`~accelwrap.optim.scheduler.onecycle`,
:mod:`~accelwrap.optim.scheduler.plateau`) is written once: its math, its docstring (summary,
details, ``Args``), its keyword-only ``__init__`` arguments with their types and defaults,
the epoch-count arguments and, where MMEngine's positional order differs, that order. This
module derives from it, for each variant, the class's name (``MultiStep`` + ``LR``), its
signature (``optimizer``, ``param_name`` for the Param variant, the family's arguments and
the common ``begin``/``end``/``last_step``/``by_epoch``/``verbose`` of
:func:`common_arguments`), its docstring (common arguments documented by
:class:`~accelwrap.optim.scheduler.base.ParamScheduler`) and its registration in
``PARAM_SCHEDULERS``. The classes are declared by name, one line each, in
``param_scheduler``, ``lr_scheduler`` and ``momentum_scheduler``.

Example:
    >>> from accelwrap.optim.scheduler.factory import scheduler_signature
    >>> from accelwrap.optim.scheduler.families import MultiStep
    >>> list(scheduler_signature(MultiStep, takes_param_name=False).parameters)
    ['optimizer', 'milestones', 'gamma', 'last_step', 'begin', 'end', 'by_epoch', 'verbose']
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from typing import Any

from accelwrap.errors import suggest
from accelwrap.optim.scheduler.base import COMMON_ARGS, INF, ParamScheduler
from accelwrap.optim.scheduler.chainable import ChainableScheduler
from accelwrap.optim.scheduler.plateau import ReduceOnPlateau, ReduceOnPlateauScheduler
from accelwrap.registry import PARAM_SCHEDULERS

#: ``param_name`` binding -> (class-name suffix, what the docstring says is scheduled).
KINDS: dict[str | None, tuple[str, str]] = {
    "lr": ("LR", "learning rate"),
    "momentum": ("Momentum", "momentum"),
    None: ("ParamScheduler", "value of ``param_name``"),
}
MOMENTUM_NOTE = ("The momentum is ``momentum`` for SGD-style optimizers and ``betas[0]`` for "
                 "Adam-style ones.")
EXAMPLE = """Example:
    >>> import torch
    >>> from accelwrap.optim.scheduler import {name}
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    >>> sched = {name}(opt{param}, {example})
    >>> {step}"""
_ENTRY = re.compile(r"^ {4}(\w+)(?: \([^)]*\))?: (.*)$")
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def common_arguments(optimizer: Any, param_name: str, begin: float = 0, end: float = INF,
                     last_step: int = -1, by_epoch: bool = True, verbose: bool = False) -> None:
    """The arguments every scheduler class has, as its signature shows them (never called).

    ``begin`` and ``end`` are floats because a config may count fractional epochs;
    ``convert_to_iter_based`` turns them into whole iterations.
    """


def _base_for(family: type) -> type[ParamScheduler]:
    return ReduceOnPlateauScheduler if issubclass(family, ReduceOnPlateau) else ChainableScheduler


def scheduler_signature(family: type, takes_param_name: bool) -> inspect.Signature:
    """The constructor signature of a variant of ``family`` (without ``self``).

    Args:
        family: A family class (its keyword-only ``__init__`` arguments are the family's).
        takes_param_name: Whether ``param_name`` is an argument (the Param variant).

    Returns:
        ``optimizer``, ``param_name`` (Param variant only), then the family's and the
        common arguments: in ``family.order`` where it has one, else the family's first.

    Raises:
        ValueError: ``family.order`` does not name each argument exactly once.

    Example:
        >>> from accelwrap.optim.scheduler.factory import scheduler_signature
        >>> from accelwrap.optim.scheduler.families import Exponential
        >>> str(scheduler_signature(Exponential, takes_param_name=True))[:60]
        '(optimizer: Any, param_name: str, gamma: float, begin: float'
    """
    common = list(inspect.signature(common_arguments, eval_str=True).parameters.values())
    own = [p.replace(kind=_POSITIONAL)
           for p in inspect.signature(family.__init__, eval_str=True).parameters.values()
           if p.kind is inspect.Parameter.KEYWORD_ONLY]
    rest = {p.name: p for p in [*own, *common[2:]]}
    order = family.order or list(rest)
    if sorted(order) != sorted(rest):
        raise ValueError(f"{family.__name__}.order must name each of {sorted(rest)} once, "
                         f"got {list(order)}")
    head = common[:2] if takes_param_name else common[:1]
    return inspect.Signature([*head, *(rest[name] for name in order)])


def _sections(doc: str) -> tuple[str, str, dict[str, str]]:
    """A Google-style docstring's summary, the paragraphs before ``Args:``, and its Args."""
    lines = inspect.cleandoc(doc or "").splitlines()
    blank = lines.index("") if "" in lines else len(lines)
    summary = " ".join(lines[:blank])
    details: list[str] = []
    args: dict[str, str] = {}
    section, name = None, None
    for line in lines[blank:]:
        if re.match(r"^\w[\w ]*:$", line):
            section = line[:-1]
        elif section is None:
            details.append(line)
        elif section == "Args" and (entry := _ENTRY.match(line)):
            name = entry.group(1)
            args[name] = entry.group(2)
        elif section == "Args" and name and line.strip():
            args[name] += " " + line.strip()
    paragraphs = "\n".join(details).strip().split("\n\n")
    return summary, "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip()), args


def _wrap(text: str, indent: str = "", subsequent: str = "") -> str:
    return textwrap.fill(text, width=88, initial_indent=indent, subsequent_indent=subsequent)


def scheduler_doc(family: type, name: str, param_name: str | None,
                  signature: inspect.Signature) -> str:
    """The docstring of the ``param_name`` variant ``name`` of ``family``.

    Args:
        family: The family class (its docstring is the prose).
        name: The class name.
        param_name: ``'lr'``, ``'momentum'`` or None (the Param variant).
        signature: The class's signature (documented argument by argument).

    Returns:
        The docstring: summary, details, ``Args`` and a runnable ``Example``.

    Raises:
        ValueError: An argument is documented neither by the family nor by ``ParamScheduler``.

    Example:
        >>> from accelwrap.optim.scheduler.factory import scheduler_doc, scheduler_signature
        >>> from accelwrap.optim.scheduler.families import Exponential
        >>> signature = scheduler_signature(Exponential, takes_param_name=False)
        >>> print(scheduler_doc(Exponential, 'ExponentialLR', 'lr', signature).splitlines()[0])
        Exponential schedule of the learning rate: multiply the value by ``gamma`` at every
    """
    summary, details, family_args = _sections(family.__doc__)
    docs = {**family_args, **_sections(ParamScheduler.__doc__)[2]}
    missing = [arg for arg in signature.parameters if arg not in docs]
    if missing:
        raise ValueError(f"{family.__name__}: the docstring's Args do not document {missing}")
    what = KINDS[param_name][1]
    head = f"{family.__name__} schedule of the {what}: {summary[:1].lower()}{summary[1:]}"
    paragraphs = [MOMENTUM_NOTE] if param_name == "momentum" else []
    paragraphs += [p for p in details.split("\n\n") if p]
    args = "\n".join(_wrap(f"{arg}: {docs[arg]}", " " * 4, " " * 8) for arg in signature.parameters)
    example = EXAMPLE.format(name=name, param=", 'weight_decay'" if param_name is None else "",
                             example=family.example, step=family.example_step)
    return "\n\n".join([_wrap(head), *(_wrap(p) for p in paragraphs), f"Args:\n{args}", example])


def _scheduler_init(self: ParamScheduler, *args: Any, **kwargs: Any) -> None:
    """Bind the arguments to the class signature, then hand them to the scheduler base."""
    cls = type(self)
    try:
        bound = cls._declared_signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}: {exc}") from None
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    optimizer = arguments.pop("optimizer")
    param_name = arguments.pop("param_name", cls.fixed_param_name)
    common = {name: arguments.pop(name) for name in COMMON_ARGS}
    cls.scheduler_base.__init__(self, optimizer, param_name, arguments, **common)


class FamilyAttribute:
    """A scheduler attribute read from its family (``sched.T_max``, ``sched.milestones`` ...).

    The value is the one MMEngine's scheduler stores (after ``build_iter_from_epoch``: the
    converted iteration count). It is read-only: the schedule was computed from it at
    construction, so assigning would silently change nothing; build a new scheduler.

    Args:
        name: The attribute's name on the family instance (``scheduler.schedule``).

    Example:
        >>> import torch
        >>> from accelwrap.optim.scheduler import CosineAnnealingLR
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        >>> CosineAnnealingLR(opt, begin=5, end=100).T_max
        95
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return getattr(instance.schedule, self.name)

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(f"{type(instance).__name__}.{self.name} is read-only: the schedule "
                             f"was computed from it when the scheduler was built; build a new "
                             f"scheduler with {self.name}={value!r} instead")


class _DeclaredSignature:
    """``__signature__`` of a made class, hidden from subclasses with their own ``__init__``."""

    def __get__(self, instance: Any, owner: type) -> inspect.Signature | None:
        return owner._declared_signature if owner.__init__ is _scheduler_init else None


def make_scheduler(family: type, *, param_name: str | None,
                   module: str | None = None) -> type[ParamScheduler]:
    """Make and register the scheduler class of ``family`` bound to ``param_name``.

    Args:
        family: A family class: a :class:`~accelwrap.optim.scheduler.families.Family`
            subclass (chainable) or :class:`~accelwrap.optim.scheduler.plateau.ReduceOnPlateau`.
        param_name: ``'lr'`` (``<Family>LR``), ``'momentum'`` (``<Family>Momentum``, which
            writes ``betas[0]`` for Adam-style optimizers) or None (``<Family>ParamScheduler``,
            whose second argument is ``param_name``).
        module: The class's ``__module__``. Defaults to the calling module's name.

    Returns:
        The class, registered in ``PARAM_SCHEDULERS`` under its name.

    Raises:
        ValueError: ``param_name`` is not one of those, or ``family`` is badly declared.

    Example:
        >>> from accelwrap.optim.scheduler.param_scheduler import StepParamScheduler
        >>> StepParamScheduler.__name__, StepParamScheduler.__module__
        ('StepParamScheduler', 'accelwrap.optim.scheduler.param_scheduler')
    """
    if param_name not in KINDS:
        raise ValueError(f"make_scheduler: param_name must be one of {list(KINDS)}, got "
                         f"{param_name!r}; {suggest(str(param_name), [k for k in KINDS if k])}")
    name = family.__name__ + KINDS[param_name][0]
    signature = scheduler_signature(family, takes_param_name=param_name is None)
    namespace = {
        "__module__": module or sys._getframe(1).f_globals.get("__name__", __name__),
        "__qualname__": name,
        "__doc__": scheduler_doc(family, name, param_name, signature),
        "__init__": _scheduler_init,
        "__signature__": _DeclaredSignature(),
        "_declared_signature": signature,
        "family": family,
        "scheduler_base": _base_for(family),
        "fixed_param_name": param_name,
        "schedules_momentum": param_name == "momentum",
        "epoch_count_args": family.epoch_counts,
        "setting_names": family.published,
        **{attr: FamilyAttribute(attr) for attr in family.published
           if not issubclass(family, ReduceOnPlateau)},
    }
    cls = type(name, (namespace["scheduler_base"],), namespace)
    PARAM_SCHEDULERS.register_module(module=cls)
    return cls
