"""The optimizer catalogue: every ``torch.optim`` optimizer plus optional third-party ones.

Names follow MMEngine, so a config written for ``mmengine`` builds the same class:

* every optimizer class in ``torch.optim`` under its own name, except torch's
  ``Adafactor``, which is ``'TorchAdafactor'``;
* ``'Adafactor'`` is always transformers' ``Adafactor`` (as in MMEngine), so one config
  name never means two different algorithms depending on what happens to be installed;
* D-Adaptation (``DAdaptAdaGrad``, ``DAdaptAdam``, ``DAdaptSGD``), lion-pytorch
  (``Lion``), Sophia (``SophiaG``, ``Sophia``, ``DecoupledSophia``, ``Sophia2``),
  bitsandbytes (``AdamW8bit``, ``PagedLion8bit``, ...; its classes whose names clash
  with torch's get a ``bnb_`` prefix, e.g. ``'bnb_AdamW'``);
* ``'ZeroRedundancyOptimizer'`` (:mod:`accelwrap.optim.zero_optimizer`).

Third-party packages are never imported here: when a package is installed its names are
registered lazily (imported on first build, so ``import accelwrap`` stays cheap); when
it is not, asking for one of its names says which ``pip install`` brings it.

Example:
    >>> import torch
    >>> from accelwrap.registry import OPTIMIZERS
    >>> OPTIMIZERS.get('TorchAdafactor') is torch.optim.Adafactor
    True
"""

from __future__ import annotations

import importlib.util
import inspect

import torch

from accelwrap.registry import OPTIMIZERS

# torch names registered under another name, so that MMEngine configs keep their meaning.
TORCH_RENAMES = {"Adafactor": "TorchAdafactor"}

_BNB_CLASHING = ("Adagrad", "Adam", "AdamW", "Lion", "RMSprop", "SGD")
_BNB_NAMES = (
    "Adam8bit", "Adam32bit", "AdamW8bit", "AdamW32bit", "Adagrad8bit", "Adagrad32bit",
    "PagedAdam", "PagedAdam8bit", "PagedAdam32bit", "PagedAdamW", "PagedAdamW8bit",
    "PagedAdamW32bit", "LAMB", "LAMB8bit", "LAMB32bit", "LARS", "LARS8bit", "LARS32bit",
    "Lion8bit", "Lion32bit", "PagedLion", "PagedLion8bit", "PagedLion32bit",
    "RMSprop8bit", "RMSprop32bit", "SGD8bit", "SGD32bit",
)

# registered name -> candidate (module, attribute, pip package); the first importable wins.
Provider = tuple[str, str, str]
THIRD_PARTY: dict[str, tuple[Provider, ...]] = {
    **{name: (("dadaptation", name, "dadaptation"),)
       for name in ("DAdaptAdaGrad", "DAdaptAdam", "DAdaptSGD")},
    "Lion": (("lion_pytorch", "Lion", "lion-pytorch"),),
    "SophiaG": (("Sophia", "SophiaG", "Sophia-Optimizer"), ("sophia_opt", "SophiaG", "sophia-opt")),
    **{name: (("Sophia", name, "Sophia-Optimizer"),)
       for name in ("Sophia", "DecoupledSophia", "Sophia2")},
    **{name: (("bitsandbytes.optim", name, "bitsandbytes"),) for name in _BNB_NAMES},
    **{f"bnb_{name}": (("bitsandbytes.optim", name, "bitsandbytes"),) for name in _BNB_CLASHING},
    "Adafactor": (("transformers", "Adafactor", "transformers"),),
}

# extra sentence for a missing name that is easy to confuse with another one.
NOTES = {"Adafactor": " (torch's own Adafactor is registered as 'TorchAdafactor')"}


def register_torch_optimizers() -> list[str]:
    """Register every optimizer class of ``torch.optim`` in ``OPTIMIZERS``.

    Returns:
        The registered names (torch's ``Adafactor`` appears as ``'TorchAdafactor'``).
    """
    names = []
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
            continue
        if cls is torch.optim.Optimizer:
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


def register_third_party_optimizers() -> list[str]:
    """Register the optional optimizers whose package is installed, lazily.

    Names whose package is missing get a hint instead, so asking for them says which
    ``pip install`` brings them. Names already registered (for example by a user with
    ``force=True``) are left alone.

    Returns:
        The names registered (not yet imported).
    """
    names = []
    for name, providers in THIRD_PARTY.items():
        if name in OPTIMIZERS:
            continue
        found = next((p for p in providers if _installed(p[0])), None)
        if found is None:
            pips = " or ".join(f"`pip install {pip}`" for _, _, pip in providers)
            note = NOTES.get(name, "")
            OPTIMIZERS.add_missing_hint(name, f"it comes from an optional package; {pips} "
                                              f"brings it{note}")
            continue
        module, attr, pip = found
        OPTIMIZERS.register_lazy(name, module, attr,
                                 hint=f"`pip install {pip}` installs a working version")
        names.append(name)
    return names


def register_zero_redundancy_optimizer() -> None:
    """Register ``'ZeroRedundancyOptimizer'``, imported on first use.

    ``torch.distributed.optim`` takes most of a second to import, so the class lives in
    :mod:`accelwrap.optim.zero_optimizer` and is loaded only when somebody asks for it.
    """
    if "ZeroRedundancyOptimizer" not in OPTIMIZERS:
        OPTIMIZERS.register_lazy("ZeroRedundancyOptimizer", "accelwrap.optim.zero_optimizer",
                                 hint="this torch build needs torch.distributed")


TORCH_OPTIMIZERS = register_torch_optimizers()
THIRD_PARTY_OPTIMIZERS = register_third_party_optimizers()
register_zero_redundancy_optimizer()

__all__ = ["THIRD_PARTY", "THIRD_PARTY_OPTIMIZERS", "TORCH_OPTIMIZERS", "TORCH_RENAMES",
           "register_third_party_optimizers", "register_torch_optimizers",
           "register_zero_redundancy_optimizer"]
