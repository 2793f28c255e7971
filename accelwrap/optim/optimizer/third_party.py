"""Third-party optimizers: which package provides each name, and why a name is unavailable.

:data:`FAMILIES` maps each optional family (D-Adaptation, lion-pytorch, Sophia,
bitsandbytes, transformers) to its names and their candidate providers: the modules that
may define the class and the ``pip install`` that brings a working one. The
``register_*_optimizers()`` functions are MMEngine's; :mod:`accelwrap.optim.optimizer.builder`
calls them when it is imported and keeps the ``*_OPTIMIZERS`` lists they return.

Third-party packages are never imported here: when a package is installed its names are
registered lazily (as a :class:`ThirdPartyEntry`, imported on first build, so ``import
accelwrap`` stays cheap). Asking for a name that cannot be had says which of three things is
wrong: no provider is installed (the ``pip install`` that brings a working one, or that none
does today); one is installed but its import fails (its package, version and error); or it
imports but lacks the class. Each is a :class:`~accelwrap.errors.UnknownTypeError`.

Example:
    >>> [p.pip for p in THIRD_PARTY['SophiaG']]
    ['sophia-opt', None, None]
    >>> sorted(FAMILIES)
    ['bitsandbytes', 'dadaptation', 'lion', 'sophia', 'transformers']
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
from typing import Any, NamedTuple

import torch

from accelwrap.errors import UnknownTypeError
from accelwrap.registry import OPTIMIZERS
from accelwrap.registry.entries import LazyEntry

__all__ = [
    "FAMILIES", "NOTES", "THIRD_PARTY", "Provider", "ThirdPartyEntry",
    "register_bitsandbytes_optimizers", "register_dadaptation_optimizers",
    "register_lion_optimizers", "register_sophia_optimizers", "register_third_party_optimizers",
    "register_torch_npu_optimizers", "register_transformers_optimizers",
]

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
