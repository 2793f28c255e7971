"""Optimizers and their wrappers built from configs (``mmengine.optim.optimizer.builder``).

**The optimizer catalogue**: every ``torch.optim`` optimizer plus optional third-party ones.

Names follow MMEngine, so a config written for ``mmengine`` builds the same class:

* every optimizer class in ``torch.optim`` under its own name, except torch's
  ``Adafactor``, which is ``'TorchAdafactor'``;
* ``'Adafactor'`` is always transformers' ``Adafactor`` (as in MMEngine), so one config
  name never means two different algorithms depending on what happens to be installed;
* D-Adaptation (``DAdaptAdaGrad``, ``DAdaptAdam``, ``DAdaptSGD``), lion-pytorch
  (``Lion``), Sophia (``SophiaG`` from sophia-opt; ``Sophia``, ``DecoupledSophia`` and
  ``Sophia2`` only from an importable module ``Sophia``, which no release installs today),
  bitsandbytes (every class of ``bitsandbytes.optim``: ``AdamW8bit``, ``PagedLion8bit``, ...;
  those whose names clash with torch's get a ``bnb_`` prefix, e.g. ``'bnb_AdamW'``);
* ``'ZeroRedundancyOptimizer'`` (:mod:`accelwrap.optim.optimizer.zero_optimizer`);
* ``'Optimizer'``, torch's base class, as MMEngine registers it.

Each family has MMEngine's ``register_*_optimizers()`` function and ``*_OPTIMIZERS`` list
(``TORCH_OPTIMIZERS``, ``DADAPTATION_OPTIMIZERS``, ``LION_OPTIMIZERS``,
``SOPHIA_OPTIMIZERS``, ``BITSANDBYTES_OPTIMIZERS``, ``TRANSFORMERS_OPTIMIZERS``,
``NPU_OPTIMIZERS``): the names registered because the package is installed.

Third-party packages are never imported here: when a package is installed its names are
registered lazily (imported on first build, so ``import accelwrap`` stays cheap). Asking
for a name that cannot be had says which of three things is wrong: no provider is
installed (the ``pip install`` that brings a working one, or that none does today); one is
installed but its import fails (its package, version and error); or it imports but lacks
the class. Each is a :class:`~accelwrap.errors.UnknownTypeError`.

**build_optim_wrapper(model, cfg)**: one optimizer wrapper, or a dict of them, from a config.

Three config forms, as in MMEngine:

1. **One optimizer** -- ``dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01),
   paramwise_cfg=..., constructor=..., accumulative_counts=..., clip_grad=...)``.
   ``type`` defaults to ``'OptimWrapper'``, ``constructor`` to
   ``'DefaultOptimWrapperConstructor'``. The constructor gets ``optim_wrapper_cfg`` (all
   keys but ``constructor`` and ``paramwise_cfg``) and ``paramwise_cfg``.
2. **Several optimizers with a custom constructor** -- ``dict(constructor='MyCtor',
   generator=dict(...), discriminator=dict(...))``: the constructor receives the member
   configs as ``optim_wrapper_cfg`` and returns what it likes (usually an
   ``OptimWrapperDict``). The default constructor refuses this form, as MMEngine's does.
3. **Several optimizers, no constructor** (accelwrap's shortcut) -- ``dict(generator=dict(
   optimizer=...), discriminator=dict(optimizer=...))``: each member config is built with
   form 1 against ``model.<member>`` (``model.generator``, ...) and the results are put in
   an ``OptimWrapperDict``. A member may also be an already-built ``OptimWrapper``.

An ``accelerator=`` given at run time is passed to every wrapper built (in form 2, it is
added to each member config that has an ``optimizer``); a config that also sets
``accelerator`` is refused rather than silently overridden. The config is never modified.

Example:
    >>> import torch
    >>> from accelwrap.registry import OPTIMIZERS
    >>> OPTIMIZERS.get('TorchAdafactor') is torch.optim.Adafactor
    True
    >>> model = torch.nn.Linear(2, 1)
    >>> wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
    >>> type(wrapper).__name__, wrapper.get_lr()
    ('OptimWrapper', {'lr': [0.1]})
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim import Optimizer

from accelwrap.errors import UnknownTypeError, suggest
from accelwrap.optim.optimizer.default_constructor import unwrap_model
from accelwrap.optim.optimizer.optimizer_wrapper import OptimWrapper
from accelwrap.optim.optimizer.optimizer_wrapper_dict import OptimWrapperDict
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS, to_plain
from accelwrap.registry.entries import LazyEntry

# torch names registered under another name, so that MMEngine configs keep their meaning.
TORCH_RENAMES = {"Adafactor": "TorchAdafactor"}

_BNB_CLASHING = ("Adagrad", "Adam", "AdamW", "Lion", "RMSprop", "SGD")
_BNB_NAMES = (  # bitsandbytes.optim's classes (0.50), less the clashing names
    "Adam8bit", "Adam32bit", "AdamW8bit", "AdamW32bit", "Adagrad8bit", "Adagrad32bit",
    "AdEMAMix", "AdEMAMix8bit", "AdEMAMix32bit", "LAMB", "LAMB8bit", "LAMB32bit",
    "LARS", "LARS8bit", "LARS32bit", "PytorchLARS", "Lion8bit", "Lion32bit",
    "PagedAdam", "PagedAdam8bit", "PagedAdam32bit", "PagedAdamW", "PagedAdamW8bit",
    "PagedAdamW32bit", "PagedAdEMAMix", "PagedAdEMAMix8bit", "PagedAdEMAMix32bit",
    "PagedLion", "PagedLion8bit", "PagedLion32bit", "RMSprop8bit", "RMSprop32bit",
    "SGD8bit", "SGD32bit",
)


class Provider(NamedTuple):
    """A module that may define a third-party optimizer class, and what installs it."""

    module: str
    attr: str
    pip: str | None  # the ``pip install`` argument that brings a working one; None: none does


# Sophia-Optimizer, the package MMEngine's docs name, as found on the package index.
_SOPHIA_HISTORY = (
    "Sophia-Optimizer, the package MMEngine's docs name, defines it only in its releases up "
    "to 0.2.1 (module `Sophia`), and `import Sophia` fails in each of them from 0.1.2 on "
    "(ModuleNotFoundError: No module named 'decoupled_sophia' or 'experiments', which its "
    "wheels do not ship; 0.1.1 imports but its Sophia needs `model` and `input_data` and its "
    "step() fails on torch 2); its releases 0.2.3 on ship only SophiaG, as module `sophia`")
# registered name -> candidate providers; the first installed one that imports and has it wins.
FAMILIES: dict[str, dict[str, tuple[Provider, ...]]] = {
    "dadaptation": {name: (Provider("dadaptation", name, "dadaptation"),)
                    for name in ("DAdaptAdaGrad", "DAdaptAdam", "DAdaptSGD")},
    "lion": {"Lion": (Provider("lion_pytorch", "Lion", "lion-pytorch"),)},
    "sophia": {
        "SophiaG": (Provider("sophia_opt", "SophiaG", "sophia-opt"),
                    Provider("sophia", "SophiaG", None), Provider("Sophia", "SophiaG", None)),
        **{name: (Provider("Sophia", name, None),)
           for name in ("Sophia", "DecoupledSophia", "Sophia2")},
    },
    "bitsandbytes": {
        **{name: (Provider("bitsandbytes.optim", name, "bitsandbytes"),) for name in _BNB_NAMES},
        **{f"bnb_{name}": (Provider("bitsandbytes.optim", name, "bitsandbytes"),)
           for name in _BNB_CLASHING},
    },
    "transformers": {"Adafactor": (Provider("transformers", "Adafactor", "transformers"),)},
}
THIRD_PARTY: dict[str, tuple[Provider, ...]] = {
    name: providers for family in FAMILIES.values() for name, providers in family.items()}

# extra words for a name that is easy to confuse, or whose documented package is broken.
NOTES = {
    "Adafactor": " (torch's own Adafactor is registered as 'TorchAdafactor')",
    "SophiaG": " (`pip install Sophia-Optimizer`, which MMEngine's docs name, installs module "
               "`sophia`, whose latest release 0.2.5 fails to import: ImportError: cannot import "
               "name 'sophiag' from 'sophia.sophia')",
    **{name: f": {_SOPHIA_HISTORY}; SophiaG comes from `pip install sophia-opt`"
       for name in ("Sophia", "DecoupledSophia", "Sophia2")},
}


def register_torch_optimizers() -> list[str]:
    """Register every optimizer class of ``torch.optim`` in ``OPTIMIZERS``.

    As in MMEngine, the base class ``torch.optim.Optimizer`` is registered too (as
    ``'Optimizer'``), so ``OPTIMIZERS.get('Optimizer')`` resolves.

    Returns:
        The registered names (torch's ``Adafactor`` appears as ``'TorchAdafactor'``,
        the name it is registered under; MMEngine lists ``'Adafactor'`` here).

    Example:
        >>> 'Optimizer' in register_torch_optimizers()
        True
    """
    names = []
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if attr.startswith("__") or not (inspect.isclass(cls)
                                         and issubclass(cls, torch.optim.Optimizer)):
            continue
        name = TORCH_RENAMES.get(attr, attr)
        OPTIMIZERS.register_module(name=name, module=cls, force=True)
        names.append(name)
    return names


def _installed(module: str) -> bool:
    """Whether ``module``'s top-level package can be found, without importing it."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def _distribution(module: str) -> str:
    """``'sophia-optimizer 0.2.5 (module `sophia`)'``: what installed ``module``'s package."""
    top = module.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    versions = []
    for name in dict.fromkeys(names):
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(name)
    return f"{' and '.join(versions)} (module `{top}`)" if versions else f"module `{top}`"


def _advice(name: str, providers: tuple[Provider, ...]) -> str:
    """What installing would bring ``name``: the ``pip install`` of each provider that works."""
    pips = " or ".join(f"`pip install {p.pip}`" for p in providers if p.pip)
    if not pips:
        return f"no package that installs today provides a working one{NOTES.get(name, '')}"
    return f"{pips} brings it{NOTES.get(name, '')}"


class ThirdPartyEntry(LazyEntry):
    """A lazy optimizer entry whose installed providers are tried in turn on first use.

    The error, when none works, names for each installed provider its package, version and
    why it failed (its import raised, or it lacks the class), and advises only installing
    providers that are not installed.

    Args:
        name: The registered name.
        providers: Every provider of ``name``, installed or not (see :data:`FAMILIES`); at
            least one must be installed.

    Example:
        >>> ThirdPartyEntry('Adam', (Provider('torch.optim', 'Adam', 'torch'),)).load('x')
        <class 'torch.optim.adam.Adam'>
        >>> try:
        ...     ThirdPartyEntry('Nope', (Provider('torch.optim', 'Nope', 'torch'),)).load('x')
        ... except UnknownTypeError as err:
        ...     print(err)
        x cannot be loaded: torch ... (module `torch`) is installed and imports, but
        `torch.optim` has no Nope; no other installed package provides it
    """

    __slots__ = ("name", "providers")

    def __init__(self, name: str, providers: tuple[Provider, ...]) -> None:
        first = next(p for p in providers if _installed(p.module))
        super().__init__(first.module, first.attr, "")
        self.name, self.providers = name, providers

    def load(self, where: str) -> Any:
        """Import the class from the first installed provider that has it.

        Args:
            where: How to name the entry in the error message.

        Raises:
            UnknownTypeError: No installed provider imports and has the class.
        """
        failures, missing = [], []
        for provider in self.providers:
            if not _installed(provider.module):
                missing.append(provider)
                continue
            try:
                module = importlib.import_module(provider.module)
            except Exception as err:  # a package may raise anything while importing
                failures.append(f"{_distribution(provider.module)} is installed, but `import "
                                f"{provider.module}` fails ({type(err).__name__}: {err})")
                continue
            if inspect.isclass(getattr(module, provider.attr, None)):
                return getattr(module, provider.attr)
            failures.append(f"{_distribution(provider.module)} is installed and imports, but "
                            f"`{provider.module}` has no {provider.attr}")
        working = tuple(p for p in missing if p.pip)
        advice = (_advice(self.name, working) if working or not any(p.pip for p in self.providers)
                  else "no other installed package provides it")
        raise UnknownTypeError(f"{where} cannot be loaded: {'; '.join(failures)}; {advice}")


def _register_family(family: str) -> list[str]:
    """Register lazily the names of ``family`` whose package is installed; hint the rest.

    Names already registered (for example by a user with ``force=True``) are left alone.
    """
    names = []
    for name, providers in FAMILIES[family].items():
        if name in OPTIMIZERS._module_dict:
            continue
        if not any(_installed(p.module) for p in providers):
            OPTIMIZERS.add_missing_hint(name, f"it comes from an optional package that is not "
                                              f"installed; {_advice(name, providers)}")
            continue
        OPTIMIZERS._module_dict[name] = ThirdPartyEntry(name, providers)  # a LazyEntry
        names.append(name)
    return names


def register_dadaptation_optimizers() -> list[str]:
    """Register ``DAdaptAdaGrad``, ``DAdaptAdam``, ``DAdaptSGD`` if ``dadaptation`` is installed.

    Returns:
        The names registered (imported on first use), as MMEngine's function returns.
    """
    return _register_family("dadaptation")


def register_lion_optimizers() -> list[str]:
    """Register ``Lion`` if ``lion-pytorch`` is installed; returns the names registered."""
    return _register_family("lion")


def register_sophia_optimizers() -> list[str]:
    """Register Sophia's optimizers (``SophiaG``, ...) if installed; returns the names."""
    return _register_family("sophia")


def register_bitsandbytes_optimizers() -> list[str]:
    """Register bitsandbytes' optimizers if installed; returns the names registered.

    Its classes named like torch's (``Adam``, ``AdamW``, ``Lion``, ...) get a ``bnb_``
    prefix, always (MMEngine prefixes only names already taken when it runs, so there
    ``'Lion'`` would mean bitsandbytes' Lion when lion-pytorch is absent).
    """
    return _register_family("bitsandbytes")


def register_transformers_optimizers() -> list[str]:
    """Register transformers' ``Adafactor`` if transformers is installed; returns the names."""
    return _register_family("transformers")


def register_torch_npu_optimizers() -> list[str]:
    """Register ``torch_npu.optim``'s optimizers when an Ascend NPU is available.

    Not called when accelwrap is imported (importing ``torch_npu`` is slow and has side
    effects), so ``NPU_OPTIMIZERS`` starts empty; call it on an NPU machine.

    Returns:
        The names registered; empty without ``torch_npu`` or an available NPU.
    """
    if not _installed("torch_npu"):
        return []
    torch_npu = importlib.import_module("torch_npu")
    if not (hasattr(torch_npu, "optim") and torch.npu.is_available()):
        return []
    names = []
    for attr in dir(torch_npu.optim):
        cls = getattr(torch_npu.optim, attr)
        if (attr.startswith("__") or attr in OPTIMIZERS._module_dict
                or not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer))):
            continue
        OPTIMIZERS.register_module(module=cls)
        names.append(attr)
    return names


def register_third_party_optimizers() -> list[str]:
    """Register every optional optimizer family (see :data:`FAMILIES`), lazily.

    Returns:
        The names registered (not yet imported), all families together.
    """
    return [name for family in FAMILIES for name in _register_family(family)]


def register_zero_redundancy_optimizer() -> None:
    """Register ``'ZeroRedundancyOptimizer'``, imported on first use.

    ``torch.distributed.optim`` takes most of a second to import, so the class lives in
    :mod:`accelwrap.optim.optimizer.zero_optimizer` and is loaded only when somebody asks for it.
    """
    if "ZeroRedundancyOptimizer" not in OPTIMIZERS._module_dict:
        OPTIMIZERS.register_lazy("ZeroRedundancyOptimizer",
                                 "accelwrap.optim.optimizer.zero_optimizer",
                                 hint="this torch build needs torch.distributed")


TORCH_OPTIMIZERS = register_torch_optimizers()
NPU_OPTIMIZERS: list[str] = []  # filled by calling register_torch_npu_optimizers()
DADAPTATION_OPTIMIZERS = register_dadaptation_optimizers()
LION_OPTIMIZERS = register_lion_optimizers()
SOPHIA_OPTIMIZERS = register_sophia_optimizers()
BITSANDBYTES_OPTIMIZERS = register_bitsandbytes_optimizers()
TRANSFORMERS_OPTIMIZERS = register_transformers_optimizers()
THIRD_PARTY_OPTIMIZERS = (DADAPTATION_OPTIMIZERS + LION_OPTIMIZERS + SOPHIA_OPTIMIZERS
                          + BITSANDBYTES_OPTIMIZERS + TRANSFORMERS_OPTIMIZERS)
register_zero_redundancy_optimizer()


SINGLE_KEYS = ("type", "optimizer", "constructor", "paramwise_cfg")


def build_optim_wrapper(model: nn.Module, cfg: Mapping[str, Any] | DictConfig,
                        accelerator: Any = None) -> Any:
    """Build an optimizer wrapper (or an ``OptimWrapperDict``) for ``model`` from ``cfg``.

    Args:
        model: The model whose parameters are optimized (DDP / compiled wrappers are
            looked through).
        cfg: A dict or ``DictConfig`` in one of the three forms of this module's
            docstring. Never modified.
        accelerator: An ``accelerate.Accelerator`` handed to every wrapper built.

    Returns:
        The wrapper the constructor built, or an ``OptimWrapperDict`` for form 3.

    Raises:
        TypeError: ``cfg`` is not a dict.
        ValueError: ``cfg`` fits none of the forms, ``accelerator`` is given twice, or
            a member names no attribute of ``model``.
        UnknownTypeError: A constructor, wrapper or optimizer type is not registered.

    Example:
        >>> import torch
        >>> gan = torch.nn.ModuleDict(dict(gen=torch.nn.Linear(2, 2), disc=torch.nn.Linear(2, 1)))
        >>> wrappers = build_optim_wrapper(gan, dict(
        ...     gen=dict(optimizer=dict(type='SGD', lr=0.1)),
        ...     disc=dict(optimizer=dict(type='Adam', lr=0.01))))
        >>> wrappers.get_lr()
        {'gen.lr': [0.1], 'disc.lr': [0.01]}
    """
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise TypeError(f"build_optim_wrapper: cfg must be a dict, got {type(cfg).__name__} "
                        f"({cfg!r})")
    cfg = to_plain(cfg)
    if accelerator is not None and "accelerator" in cfg:
        raise ValueError("build_optim_wrapper: 'accelerator' is set both in the config and as "
                         "an argument; remove it from the config")
    if any(key in cfg for key in SINGLE_KEYS):
        return _build_with_constructor(model, cfg, accelerator)
    return _build_members(model, cfg, accelerator)


def _build_with_constructor(model: nn.Module, cfg: dict[str, Any], accelerator: Any) -> Any:
    """Forms 1 and 2: hand the config to the (default or custom) constructor."""
    constructor_type = cfg.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    if isinstance(cfg.get("optimizer"), Optimizer):
        return _wrap_built_optimizer(cfg, paramwise_cfg, constructor_type, accelerator)
    if accelerator is not None:
        if "optimizer" in cfg:
            cfg["accelerator"] = accelerator
        else:
            cfg = {key: _with_accelerator(value, accelerator) for key, value in cfg.items()}
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        {"type": constructor_type, "optim_wrapper_cfg": cfg, "paramwise_cfg": paramwise_cfg})
    return constructor(model)


def _with_accelerator(member: Any, accelerator: Any) -> Any:
    if not isinstance(member, Mapping) or "optimizer" not in member:
        return member
    if "accelerator" in member:
        raise ValueError("build_optim_wrapper: 'accelerator' is set both in a member config "
                         "and as an argument; remove it from the config")
    return {**member, "accelerator": accelerator}


def _wrap_built_optimizer(cfg: dict[str, Any], paramwise_cfg: Any, constructor_type: Any,
                          accelerator: Any) -> Any:
    """``optimizer`` is already an Optimizer: only the wrapper is built (as MMEngine's runner)."""
    if paramwise_cfg or constructor_type != "DefaultOptimWrapperConstructor":
        raise ValueError("build_optim_wrapper: 'paramwise_cfg' and 'constructor' need an "
                         "optimizer config, but 'optimizer' is an already-built "
                         f"{type(cfg['optimizer']).__name__}")
    default_args = {"accelerator": accelerator} if accelerator is not None else None
    return OPTIM_WRAPPERS.build({"type": "OptimWrapper", **cfg}, default_args=default_args)


def _build_members(model: nn.Module, cfg: dict[str, Any], accelerator: Any) -> Any:
    """Form 3: one wrapper per member config, each over ``model.<member>``."""
    if not cfg or not all(isinstance(v, (Mapping, OptimWrapper)) for v in cfg.values()):
        raise ValueError(
            "build_optim_wrapper: the config has no 'optimizer' (one optimizer) and is not a "
            "dict of member configs (several optimizers) either; got keys "
            f"{sorted(map(str, cfg))}; {suggest(str(next(iter(cfg), '')), SINGLE_KEYS)}")
    model = unwrap_model(model)
    members = dict(model.named_children())
    wrappers = {}
    for name, member_cfg in cfg.items():
        if isinstance(member_cfg, OptimWrapper):
            wrappers[name] = member_cfg
            continue
        if name not in members:
            raise ValueError(f"build_optim_wrapper: optimizer config {name!r} must name a "
                             f"submodule of {type(model).__name__}, which has none called "
                             f"{name!r}; {suggest(name, [*members, *SINGLE_KEYS])}")
        if "optimizer" not in member_cfg and "constructor" not in member_cfg:
            raise ValueError(f"build_optim_wrapper: the config of member {name!r} has no "
                             f"'optimizer' (keys given: {sorted(map(str, member_cfg))})")
        wrappers[name] = build_optim_wrapper(members[name], member_cfg, accelerator=accelerator)
    return OptimWrapperDict(**wrappers)


__all__ = [
    "BITSANDBYTES_OPTIMIZERS", "DADAPTATION_OPTIMIZERS", "FAMILIES", "LION_OPTIMIZERS",
    "NPU_OPTIMIZERS", "OPTIMIZERS", "OPTIM_WRAPPER_CONSTRUCTORS", "SOPHIA_OPTIMIZERS",
    "THIRD_PARTY", "THIRD_PARTY_OPTIMIZERS", "TORCH_OPTIMIZERS", "TORCH_RENAMES",
    "TRANSFORMERS_OPTIMIZERS", "build_optim_wrapper", "register_bitsandbytes_optimizers",
    "register_dadaptation_optimizers", "register_lion_optimizers", "register_sophia_optimizers",
    "register_third_party_optimizers", "register_torch_npu_optimizers",
    "register_torch_optimizers", "register_transformers_optimizers",
    "register_zero_redundancy_optimizer",
]
