"""Every public name of MMEngine's optimizer-layer modules exists at the same accelwrap path.

A module's public names are its ``__all__``, or, without one, the classes and functions
it defines and the constants it holds. Exclusions are listed with their reason.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing

import pytest

MODULES = [
    "optim", "optim.optimizer", "optim.optimizer.optimizer_wrapper",
    "optim.optimizer.amp_optimizer_wrapper", "optim.optimizer.apex_optimizer_wrapper",
    "optim.optimizer.optimizer_wrapper_dict", "optim.optimizer.default_constructor",
    "optim.optimizer.builder", "optim.optimizer.zero_optimizer", "optim.optimizer.base",
    "registry", "registry.registry", "registry.root", "registry.default_scope",
    "registry.build_functions", "registry.utils",
]

EXCLUDED = {
    "optim.optimizer.amp_optimizer_wrapper": {
        "TORCH_VERSION": "mmengine.utils.dl_utils' version string, imported there; use "
                         "torch.__version__"},
    "optim.optimizer.zero_optimizer": {
        "TORCH_VERSION": "mmengine.utils.dl_utils' version string, imported there"},
    "optim.optimizer.apex_optimizer_wrapper": {
        "apex_amp": "the optional apex.amp module MMEngine imports at import time; accelwrap "
                    "imports no optional package eagerly"},
    "registry.registry": {
        "MODULE2PACKAGE": "mmengine.config's map of OpenMMLab packages to pip names, used to "
                          "fall back to <pkg>.utils.register_all_modules, which accelwrap "
                          "does not do (use locations=)"},
    "registry.build_functions": {
        "TYPE_CHECKING": "typing.TYPE_CHECKING, imported there"},
}


def public_names(module: types.ModuleType) -> set[str]:
    if hasattr(module, "__all__"):
        return set(module.__all__)
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if callable(value) and getattr(value, "__module__", None) != module.__name__:
            continue  # imported from elsewhere
        if not callable(value) and (getattr(value, "__module__", None) == "typing"
                                    or isinstance(value, typing.TypeVar)):
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("path", MODULES)
def test_mmengine_names_exist_in_accelwrap(path):
    pytest.importorskip("mmengine")
    theirs = importlib.import_module(f"mmengine.{path}")
    ours = importlib.import_module(f"accelwrap.{path}")
    excluded = EXCLUDED.get(path, {})
    missing = sorted(n for n in public_names(theirs) - set(excluded) if not hasattr(ours, n))
    assert missing == []
    assert all(hasattr(theirs, n) for n in excluded), "an exclusion MMEngine no longer has"


@pytest.mark.parametrize("path", MODULES)
def test_registry_objects_are_shared_between_paths(path):
    ours = importlib.import_module(f"accelwrap.{path}")
    from accelwrap import registry
    for name in ("OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS",
                 "PARAM_SCHEDULERS"):
        if hasattr(ours, name):
            assert getattr(ours, name) is getattr(registry, name)
