"""build_optim_wrapper: config forms, runtime accelerator, immutability, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from accelwrap.errors import UnknownTypeError
from accelwrap.optim import (
    DefaultOptimWrapperConstructor,
    OptimWrapper,
    OptimWrapperDict,
    build_optim_wrapper,
)
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS

SGD = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


class GAN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(3, 3)
        self.discriminator = nn.Sequential(nn.Linear(3, 1), nn.LayerNorm(1))


def ids(params) -> set[int]:
    return {id(p) for p in params}


def optimized(wrapper: OptimWrapper) -> set[int]:
    return ids(p for g in wrapper.optimizer.param_groups for p in g["params"])


FULL = {"type": "OptimWrapper", "optimizer": SGD, "accumulative_counts": 2,
        "clip_grad": {"max_norm": 1.0}, "paramwise_cfg": {"bias_lr_mult": 2.0,
                                                          "custom_keys": {"0": {"lr_mult": 0.5}}}}


@pytest.mark.parametrize("as_dictconfig", [False, True])
def test_single_optimizer_config_builds_and_is_not_mutated(as_dictconfig):
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    cfg = OmegaConf.create(FULL) if as_dictconfig else copy.deepcopy(FULL)
    wrapper = build_optim_wrapper(model, cfg)
    assert type(wrapper) is OptimWrapper and wrapper._accumulative_counts == 2
    assert wrapper.clip_grad_kwargs["max_norm"] == 1.0
    lrs = sorted(g["lr"] for g in wrapper.optimizer.param_groups)
    assert lrs == pytest.approx([0.05, 0.05, 0.1, 0.2])
    assert (OmegaConf.to_container(cfg) if as_dictconfig else cfg) == FULL


def test_type_defaults_to_optim_wrapper_and_may_be_a_class():
    model = nn.Linear(2, 1)
    assert type(build_optim_wrapper(model, {"optimizer": SGD})) is OptimWrapper
    assert (type(build_optim_wrapper(model, {"type": OptimWrapper, "optimizer": SGD}))
            is OptimWrapper)
    wrapper = build_optim_wrapper(model, {"optimizer": {"type": torch.optim.Adam, "lr": 0.1}})
    assert isinstance(wrapper.optimizer, torch.optim.Adam)


def test_no_paramwise_cfg_gives_one_group_with_every_parameter():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1).requires_grad_(False))
    wrapper = build_optim_wrapper(model, {"optimizer": SGD})
    assert len(wrapper.optimizer.param_groups) == 1
    assert optimized(wrapper) == ids(model.parameters())  # MMEngine keeps frozen ones too


def test_unknown_wrapper_type_fails_before_building_the_optimizer():
    with pytest.raises(UnknownTypeError) as info:
        build_optim_wrapper(nn.Linear(2, 1), {"type": "OptimWraper", "optimizer": SGD})
    assert "'OptimWraper' is not registered in OPTIM_WRAPPERS; did you mean 'OptimWrapper'" in str(
        info.value)


def test_unknown_wrapper_argument_lists_accepted_ones():
    with pytest.raises(TypeError) as info:
        build_optim_wrapper(nn.Linear(2, 1), {"optimizer": SGD, "accumulative_count": 2})
    message = str(info.value)
    assert "OPTIM_WRAPPERS 'OptimWrapper': unexpected argument 'accumulative_count'" in message
    assert "did you mean 'accumulative_counts'" in message and "'clip_grad'" in message


def test_unknown_optimizer_type_and_argument():
    with pytest.raises(UnknownTypeError,
                       match="'Adamw' is not registered in OPTIMIZERS; did you mean 'AdamW'"):
        build_optim_wrapper(nn.Linear(2, 1), {"optimizer": {"type": "Adamw", "lr": 0.1}})
    with pytest.raises(TypeError, match="OPTIMIZERS 'Adam': unexpected argument 'momentum'"):
        build_optim_wrapper(nn.Linear(2, 1), {"optimizer": {"type": "Adam", "momentum": 0.9}})


def test_cfg_must_be_a_dict():
    with pytest.raises(TypeError, match="cfg must be a dict, got list"):
        build_optim_wrapper(nn.Linear(2, 1), [SGD])


def test_misspelt_optimizer_key_is_explained():
    with pytest.raises(ValueError) as info:
        build_optim_wrapper(nn.Linear(2, 1), {"optimiser": SGD})
    message = str(info.value)
    assert "'optimiser' must name a submodule of Linear" in message
    assert "did you mean 'optimizer'" in message


def test_prebuilt_optimizer_is_wrapped():
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    wrapper = build_optim_wrapper(model, {"optimizer": optimizer, "accumulative_counts": 3})
    assert wrapper.optimizer is optimizer and wrapper._accumulative_counts == 3
    with pytest.raises(ValueError,
                       match="'paramwise_cfg' and 'constructor' need an optimizer config"):
        build_optim_wrapper(model, {"optimizer": optimizer, "paramwise_cfg": {"bias_lr_mult": 2}})


def test_runtime_accelerator_reaches_the_wrapper():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = nn.Linear(2, 1)
    cfg = {"optimizer": SGD}
    wrapper = build_optim_wrapper(model, cfg, accelerator=accelerator)
    assert wrapper.accelerator is accelerator and cfg == {"optimizer": SGD}
    with pytest.raises(ValueError,
                       match="'accelerator' is set both in the config and as an argument"):
        build_optim_wrapper(model, {"optimizer": SGD, "accelerator": accelerator},
                            accelerator=accelerator)


def test_member_configs_build_an_optim_wrapper_dict_over_each_member():
    model = GAN()
    cfg = OmegaConf.create({
        "generator": {"optimizer": {"type": "Adam", "lr": 1e-3}, "accumulative_counts": 2},
        "discriminator": {"optimizer": SGD, "paramwise_cfg": {"norm_decay_mult": 0.0}}})
    before = OmegaConf.to_container(cfg)
    wrappers = build_optim_wrapper(model, cfg)
    assert isinstance(wrappers, OptimWrapperDict)
    assert optimized(wrappers["generator"]) == ids(model.generator.parameters())
    assert optimized(wrappers["discriminator"]) == ids(model.discriminator.parameters())
    assert wrappers["generator"]._accumulative_counts == 2
    assert sorted(g["weight_decay"] for g in wrappers["discriminator"].optimizer.param_groups) == [
        0.0, 0.0, 1e-4, 1e-4]
    lrs = wrappers.get_lr()
    assert lrs["generator.lr"] == [1e-3] and lrs["discriminator.lr"] == [0.1] * 4
    assert OmegaConf.to_container(cfg) == before


def test_member_configs_accept_prebuilt_wrappers_and_runtime_accelerator():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = GAN()
    prebuilt = OptimWrapper(torch.optim.SGD(model.discriminator.parameters(), lr=0.2))
    wrappers = build_optim_wrapper(model, {"generator": {"optimizer": SGD},
                                           "discriminator": prebuilt}, accelerator=accelerator)
    assert wrappers["discriminator"] is prebuilt
    assert wrappers["generator"].accelerator is accelerator


def test_member_name_must_be_a_submodule():
    with pytest.raises(ValueError) as info:
        build_optim_wrapper(GAN(), {"generater": {"optimizer": SGD}})
    message = str(info.value)
    assert "'generater' must name a submodule of GAN" in message
    assert "did you mean 'generator'" in message


def test_member_config_without_optimizer():
    with pytest.raises(ValueError, match=r"the config of member 'generator' has no 'optimizer' "
                                         r"\(keys given: \['optimizr'\]\)"):
        build_optim_wrapper(GAN(), {"generator": {"optimizr": SGD}})


def test_default_constructor_refuses_several_optimizers():
    with pytest.raises(ValueError, match="For several optimizers give one wrapper config per "
                                         "model member, or a constructor="):
        build_optim_wrapper(GAN(), {"constructor": "DefaultOptimWrapperConstructor",
                                    "generator": {"optimizer": SGD}})


class GANConstructor:
    """A user multi-optimizer constructor in MMEngine's style."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        self.optim_wrapper_cfg = optim_wrapper_cfg
        self.paramwise_cfg = paramwise_cfg

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        return OptimWrapperDict(**{
            name: DefaultOptimWrapperConstructor(cfg, self.paramwise_cfg)(getattr(model, name))
            for name, cfg in self.optim_wrapper_cfg.items() if isinstance(cfg, dict)})


def test_custom_multi_optimizer_constructor_gets_members_and_accelerator():
    from accelerate import Accelerator

    OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=GANConstructor, force=True)
    accelerator = Accelerator(cpu=True)
    model = GAN()
    cfg = {"constructor": "GANConstructor", "paramwise_cfg": {"bias_lr_mult": 2.0},
           "generator": {"optimizer": SGD}, "discriminator": {"optimizer": SGD}}
    before = copy.deepcopy(cfg)
    wrappers = build_optim_wrapper(model, cfg, accelerator=accelerator)
    assert set(wrappers.keys()) == {"generator", "discriminator"}
    assert all(w.accelerator is accelerator for w in wrappers.values())
    assert sorted(g["lr"] for g in wrappers["generator"].optimizer.param_groups) == [0.1, 0.2]
    assert cfg == before
