"""The optimizer catalogue's MMEngine names: per-package lists, register functions, 'Optimizer'."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from accelwrap.optim.optimizer import builder, third_party
from accelwrap.registry import OPTIMIZERS

FAMILIES = {  # list -> (register function, family in third_party.FAMILIES)
    "DADAPTATION_OPTIMIZERS": ("register_dadaptation_optimizers", "dadaptation"),
    "LION_OPTIMIZERS": ("register_lion_optimizers", "lion"),
    "SOPHIA_OPTIMIZERS": ("register_sophia_optimizers", "sophia"),
    "BITSANDBYTES_OPTIMIZERS": ("register_bitsandbytes_optimizers", "bitsandbytes"),
    "TRANSFORMERS_OPTIMIZERS": ("register_transformers_optimizers", "transformers"),
}


def installed(family: str) -> bool:
    """Whether any module that provides a name of ``family`` is installed."""
    modules = {p.module.split(".")[0] for providers in third_party.FAMILIES[family].values()
               for p in providers}
    return any(importlib.util.find_spec(module) is not None for module in modules)


def test_optimizer_base_class_resolves_as_in_mmengine():
    assert OPTIMIZERS.get("Optimizer") is torch.optim.Optimizer
    assert "Optimizer" in builder.TORCH_OPTIMIZERS
    mm = pytest.importorskip("mmengine.optim.optimizer.builder")
    from mmengine.registry import OPTIMIZERS as MM_OPTIMIZERS
    assert MM_OPTIMIZERS.get("Optimizer") is OPTIMIZERS.get("Optimizer")
    assert "Optimizer" in mm.TORCH_OPTIMIZERS


def test_torch_list_matches_mmengines_up_to_the_adafactor_name():
    mm = pytest.importorskip("mmengine.optim.optimizer.builder")
    rename = {"Adafactor": "TorchAdafactor"}
    assert builder.TORCH_OPTIMIZERS == [rename.get(n, n) for n in mm.TORCH_OPTIMIZERS]


@pytest.mark.parametrize("list_name", sorted(FAMILIES))
def test_each_family_lists_the_names_registered_from_its_installed_package(list_name):
    function, family = FAMILIES[list_name]
    names = getattr(builder, list_name)
    assert bool(names) == installed(family)
    assert all(name in OPTIMIZERS for name in names)
    assert getattr(builder, function)() == []  # already registered: nothing new
    assert set(names) <= set(builder.THIRD_PARTY_OPTIMIZERS)


@pytest.mark.parametrize("list_name", ["DADAPTATION_OPTIMIZERS", "LION_OPTIMIZERS",
                                       "TRANSFORMERS_OPTIMIZERS"])
def test_family_lists_equal_mmengines(list_name):
    mm = pytest.importorskip("mmengine.optim.optimizer.builder")
    assert getattr(builder, list_name) == getattr(mm, list_name)


def test_sophia_list_has_mmengines_names_and_sophia_opts():
    """MMEngine imports only module ``Sophia``, which no release installs importably today."""
    mm = pytest.importorskip("mmengine.optim.optimizer.builder")
    assert set(mm.SOPHIA_OPTIMIZERS) - {"Optimizer"} <= set(builder.SOPHIA_OPTIMIZERS)
    if importlib.util.find_spec("sophia_opt") is not None:
        assert "SophiaG" in builder.SOPHIA_OPTIMIZERS


def test_npu_list_is_empty_without_an_npu():
    if importlib.util.find_spec("torch_npu") is not None:
        pytest.skip("torch_npu is installed here")
    assert builder.NPU_OPTIMIZERS == [] and builder.register_torch_npu_optimizers() == []
