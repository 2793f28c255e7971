"""Build functions: MMEngine's merging rules, errors that are also MMEngine's, models, runners."""

from __future__ import annotations

import pytest
import torch

from accelwrap.registry import (
    MODELS,
    Registry,
    build_from_cfg,
    build_model_from_cfg,
    build_runner_from_cfg,
    build_scheduler_from_cfg,
)


class Box:
    def __init__(self, size: int = 1) -> None:
        self.size = size


@pytest.fixture
def reg() -> Registry:
    reg = Registry("toy", scope="t_build")
    reg.register_module(module=Box)
    return reg


def test_type_may_come_from_default_args_and_cfg_wins(reg):
    assert build_from_cfg({"size": 2}, reg, {"type": "Box"}).size == 2
    assert reg.build({"size": 2}, default_args={"type": "Box", "size": 5}).size == 2


def test_missing_type_is_a_type_error_and_a_key_error(reg):
    with pytest.raises(TypeError, match="has no 'type' key") as info:
        reg.build({"size": 1})
    assert isinstance(info.value, KeyError)  # MMEngine raises KeyError


@pytest.mark.parametrize(("cfg", "registry", "default_args", "match"), [
    ({"type": "Box"}, "toy", None, "registry must be an accelwrap Registry"),
    ({"type": "Box"}, None, [1], "default_args must be a dict or None, got list"),
])
def test_argument_types_are_checked(reg, cfg, registry, default_args, match):
    with pytest.raises(TypeError, match=match):
        build_from_cfg(cfg, registry if registry is not None else reg, default_args)


def test_build_passes_extra_keywords_to_the_build_func():
    seen = {}

    def build_func(cfg, registry, default_args=None, **extra):
        seen.update(extra, registry=registry.name)

    Registry("k", build_func=build_func, scope="t_kw").build({"type": "X"}, note=1)
    assert seen == {"note": 1, "registry": "k"}


def test_a_list_of_model_configs_builds_a_sequential():
    layers = Registry("layer", build_func=build_model_from_cfg, scope="t_layers")
    layers.register_module(module=torch.nn.ReLU)
    built = layers.build([{"type": "ReLU"}, {"type": "ReLU"}])
    assert isinstance(built, torch.nn.Sequential) and len(built) == 2
    assert MODELS.build_func is build_model_from_cfg


def test_runner_build_uses_runner_type_and_from_cfg():
    runners = Registry("runner", build_func=build_runner_from_cfg, scope="t_runners")

    @runners.register_module(name=["Runner", "MyRunner"])
    class ToyRunner:
        @classmethod
        def from_cfg(cls, cfg):
            return cfg

    assert runners.build({"work_dir": "w"}) == {"work_dir": "w"}
    assert runners.build({"runner_type": "MyRunner"}) == {"runner_type": "MyRunner"}


def test_scheduler_conversion_errors_are_also_assertion_errors():
    reg = Registry("sched", build_func=build_scheduler_from_cfg, scope="t_sched_err")

    @reg.register_module()
    class Sched:
        def __init__(self, optimizer, by_epoch=True):
            pass

    with pytest.raises(ValueError, match="needs epoch_length") as info:
        reg.build({"type": "Sched", "convert_to_iter_based": True}, default_args={"optimizer": 1})
    assert isinstance(info.value, AssertionError)  # MMEngine asserts


def test_a_scheduler_child_registry_converts_like_its_parent():
    from accelwrap.registry import PARAM_SCHEDULERS
    child = Registry("s", parent=PARAM_SCHEDULERS, scope="t_sched_child")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = child.build({"type": "MultiStepLR", "milestones": [1], "convert_to_iter_based": True},
                        default_args={"optimizer": optimizer, "epoch_length": 4})
    assert sched.by_epoch is False
    del PARAM_SCHEDULERS.children["t_sched_child"]
