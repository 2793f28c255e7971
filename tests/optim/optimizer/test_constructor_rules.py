"""DefaultOptimWrapperConstructor beyond MMEngine: RMSNorm, merging, describe(), errors,
subclasses."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from accelwrap.errors import ConfigError, UnknownTypeError
from accelwrap.optim import DefaultOptimWrapperConstructor, build_optim_wrapper
from accelwrap.optim.optimizer.default_constructor import unwrap_model
from accelwrap.optim.optimizer.paramwise import merge_param_groups
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS

SGD = {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2}


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.RMSNorm(4))
        self.head = nn.Linear(4, 2)
        self.gain = nn.Parameter(torch.ones(2))


def groups_of(paramwise: dict | None, optimizer: dict = SGD, model: nn.Module | None = None):
    ctor = DefaultOptimWrapperConstructor({"optimizer": optimizer}, paramwise)
    return ctor.param_groups(model or Tiny())


def settings_of(groups: list[dict], model: nn.Module) -> dict[str, dict]:
    by_id = {id(p): {k: v for k, v in g.items() if k != "params"} for g in groups
             for p in g["params"]}
    return {name: by_id.get(id(p)) for name, p in model.named_parameters()}


def test_rmsnorm_counts_as_a_norm_layer():
    model = Tiny()
    got = settings_of(groups_of({"norm_decay_mult": 0.0, "bias_decay_mult": 0.5}, model=model),
                      model)
    assert got["backbone.1.weight"] == {"weight_decay": 0.0}
    assert got["backbone.0.bias"] == {"weight_decay": 0.005}
    assert got["backbone.0.weight"] == {}


def test_merged_groups_keep_every_parameters_numbers():
    model = Tiny()
    paramwise = {"bias_lr_mult": 2.0, "norm_decay_mult": 0.0,
                 "custom_keys": {"head": {"lr_mult": 0.5}}}
    per_param = groups_of(paramwise, model=model)
    merged = groups_of({**paramwise, "merge_groups": True}, model=model)
    assert settings_of(merged, model) == settings_of(per_param, model)
    assert len(per_param) == 6 and len(merged) == 4
    # first-appearance order of groups and of parameters inside a group
    assert merged[0]["params"] == [model.gain, model.backbone[0].weight]  # root params first
    assert merged[-1]["params"] == [model.head.weight, model.head.bias]


def test_merge_param_groups_does_not_touch_its_input():
    groups = [{"params": [1], "lr": 0.1}, {"params": [2], "lr": 0.1}]
    before = copy.deepcopy(groups)
    assert merge_param_groups(groups) == [{"params": [1, 2], "lr": 0.1}]
    assert groups == before


def test_describe_names_the_deciding_rule():
    model = Tiny()
    model.head.bias.requires_grad_(False)
    ctor = DefaultOptimWrapperConstructor(
        {"optimizer": SGD}, {"bias_lr_mult": 2.0, "bias_decay_mult": 0.0, "norm_decay_mult": 0.0,
                             "custom_keys": {"gain": {"lr_mult": 0.0, "tag": "frozen-ish"}}})
    rows = {row.name: row for row in ctor.describe(model)}
    assert list(rows) == ["gain", "backbone.0.weight", "backbone.0.bias", "backbone.1.weight",
                          "head.weight", "head.bias"]
    assert rows["backbone.0.bias"].rule == "bias_lr_mult+bias_decay_mult"
    assert rows["backbone.0.bias"].settings["lr"] == pytest.approx(0.2)
    assert rows["backbone.0.bias"].settings["momentum"] == 0.9  # from the optimizer config
    assert rows["backbone.1.weight"].rule == "norm_decay_mult"
    assert rows["backbone.1.weight"].module_type == "RMSNorm"
    assert rows["gain"].rule == "custom_keys['gain']"
    assert rows["gain"].settings["tag"] == "frozen-ish" and rows["gain"].module_type == "Tiny"
    assert rows["head.weight"].rule == "default" and rows["head.weight"].shape == (2, 4)
    assert rows["head.bias"].rule == "skipped: requires_grad=False"
    assert rows["head.bias"].settings == {}


def test_describe_without_paramwise_cfg_and_with_shared_module():
    model = Tiny()
    model.again = model.head
    rows = DefaultOptimWrapperConstructor({"optimizer": SGD}).describe(model)
    assert {row.rule for row in rows} == {"default"}
    assert [r.name for r in rows if r.name.startswith("again")] == ["again.weight", "again.bias"]
    bypass = DefaultOptimWrapperConstructor({"optimizer": SGD}, {"bypass_duplicate": True})
    rules = {row.name: row.rule for row in bypass.describe(model)}
    assert rules["again.weight"] == "same parameter as 'head.weight'"
    assert rules["head.weight"] == "default"


def test_describe_module_shared_across_parents_with_bypass_duplicate():
    model = Tiny()
    model.extra = nn.Sequential(model.head)
    ctor = DefaultOptimWrapperConstructor({"optimizer": SGD}, {"bypass_duplicate": True})
    rules = {row.name: row.rule for row in ctor.describe(model)}
    assert rules["extra.0.weight"] == "skipped: duplicate (bypass_duplicate)"
    assert rules["head.bias"] == "default"


def test_ddp_and_compiled_wrappers_are_looked_through_but_not_a_child_called_module():
    class HasModule(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)
            self.other = nn.Linear(2, 2)

    model = HasModule()
    assert unwrap_model(model) is model
    assert unwrap_model(nn.DataParallel(model)) is model
    groups = groups_of({"custom_keys": {"other": {"lr_mult": 0.0}}}, model=nn.DataParallel(model))
    assert settings_of(groups, model)["other.weight"]["lr"] == 0.0


def test_flat_decay_mult_without_weight_decay_is_ignored_with_a_warning_as_in_mmengine(caplog):
    from mmengine.optim import build_optim_wrapper as mmengine_build

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    cfg = {"optimizer": {"type": "SGD", "lr": 0.1}, "paramwise_cfg": {"flat_decay_mult": 0.0}}
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        ours = build_optim_wrapper(model, cfg)
    assert "paramwise_cfg.flat_decay_mult=0.0 is ignored" in caplog.text
    theirs = mmengine_build(model, cfg)
    assert ([{k: v for k, v in g.items() if k != "params"} for g in ours.optimizer.param_groups]
            == [{k: v for k, v in g.items() if k != "params"}
                for g in theirs.optimizer.param_groups])


@pytest.mark.parametrize("key", ["bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult"])
def test_decay_mult_without_weight_decay_names_the_key(key):
    with pytest.raises(ValueError) as info:
        groups_of({key: 0.5}, optimizer={"type": "SGD", "lr": 0.1})
    message = str(info.value)
    assert f"paramwise_cfg.{key} multiplies the optimizer's weight_decay" in message
    assert "sets no weight_decay; add weight_decay=... to the optimizer config" in message


def test_custom_decay_mult_and_lr_mult_without_bases():
    with pytest.raises(ConfigError) as info:
        groups_of({"custom_keys": {"head": {"decay_mult": 0.0, "lr_mult": 2.0}},
                   "bias_lr_mult": 2.0}, optimizer={"type": "Lion"})
    message = str(info.value)
    assert message.startswith("3 problems in the configuration")
    assert ("paramwise_cfg.custom_keys['head'].decay_mult multiplies the optimizer's weight_decay"
            in message)
    assert "paramwise_cfg.custom_keys['head'].lr_mult multiplies the optimizer's lr" in message
    assert "paramwise_cfg.bias_lr_mult multiplies the optimizer's lr" in message


def test_unknown_paramwise_keys_are_listed_with_suggestions():
    with pytest.raises(ConfigError) as info:
        groups_of({"bias_lr_mul": 2.0, "norm_decay": 0.0, "bypass_duplicate": "yes",
                   "flat_decay_mult": "0.1"})
    message = str(info.value)
    assert "4 problems" in message
    assert "paramwise_cfg: unknown key 'bias_lr_mul'; did you mean 'bias_lr_mult'" in message
    assert "paramwise_cfg: unknown key 'norm_decay'; did you mean 'norm_decay_mult'" in message
    assert "paramwise_cfg.bypass_duplicate: expected true or false, got 'yes'" in message
    assert "paramwise_cfg.flat_decay_mult: expected a number, got '0.1'" in message


def test_bad_custom_keys_shapes():
    with pytest.raises(ConfigError, match=r"custom_keys: expected a dict of name -> settings"):
        groups_of({"custom_keys": ["head"]})
    with pytest.raises(ConfigError, match=r"custom_keys\['head'\]: expected a dict such as"):
        groups_of({"custom_keys": {"head": 0.1}})
    with pytest.raises(ConfigError, match=r"custom_keys\['head'\].lr_mult: expected a number"):
        groups_of({"custom_keys": {"head": {"lr_mult": "x"}}})


def test_custom_key_matching_nothing_lists_near_names():
    with pytest.raises(ValueError) as info:
        groups_of({"custom_keys": {"backbon.1": {"lr_mult": 0.1}, "head": {"lr_mult": 2.0}},
                   "strict_custom_keys": True})
    message = str(info.value)
    assert "paramwise_cfg.custom_keys['backbon.1'] matches no parameter name" in message
    assert "did you mean 'backbone.1'" in message


def test_custom_key_of_frozen_parameters_is_not_an_error():
    model = Tiny()
    model.head.requires_grad_(False)
    groups = groups_of({"custom_keys": {"head": {"lr_mult": 0.0}}}, model=model)
    assert settings_of(groups, model)["head.weight"] is None


def test_paramwise_cfg_must_be_a_dict():
    with pytest.raises(TypeError, match="paramwise_cfg must be a dict or None, got list"):
        DefaultOptimWrapperConstructor({"optimizer": SGD}, [("bias_lr_mult", 2)])
    with pytest.raises(TypeError, match="optim_wrapper_cfg must be a dict, got str"):
        DefaultOptimWrapperConstructor("SGD")


def test_missing_or_bad_optimizer_entry():
    with pytest.raises(ValueError, match=r"has no 'optimizer' key \(keys given: \['optimiser'\]\)"):
        DefaultOptimWrapperConstructor({"optimiser": SGD})
    with pytest.raises(TypeError, match="'optimizer' must be a dict with a 'type'"):
        DefaultOptimWrapperConstructor({"optimizer": {"lr": 0.1}})


def test_unknown_optimizer_type_fails_at_construction():
    with pytest.raises(UnknownTypeError,
                       match="'SDG' is not registered in OPTIMIZERS; did you mean 'SGD'"):
        DefaultOptimWrapperConstructor({"optimizer": {"type": "SDG", "lr": 0.1}})


def test_params_in_optimizer_config_are_refused():
    ctor = DefaultOptimWrapperConstructor({"optimizer": {**SGD, "params": []}})
    with pytest.raises(ValueError, match="optimizer.params must not be set"):
        ctor.build_optimizer(Tiny())


def test_dictconfig_inputs_are_accepted_and_left_alone():
    cfg = OmegaConf.create({"optimizer": SGD, "accumulative_counts": 2})
    paramwise = OmegaConf.create({"custom_keys": {"head": {"lr_mult": 0.5}}})
    before = (OmegaConf.to_container(cfg), OmegaConf.to_container(paramwise))
    wrapper = DefaultOptimWrapperConstructor(cfg, paramwise)(Tiny())
    assert sorted(g["lr"] for g in wrapper.optimizer.param_groups)[0] == pytest.approx(0.05)
    assert (OmegaConf.to_container(cfg), OmegaConf.to_container(paramwise)) == before


class LayerDecayConstructor(DefaultOptimWrapperConstructor):
    """A user constructor in MMEngine's style: overrides add_params, adds a paramwise key."""

    extra_paramwise_keys = ("decay_rate",)

    def add_params(self, params, module, prefix="", is_dcn_module=None):
        rate = self.paramwise_cfg["decay_rate"]
        for depth, (name, param) in enumerate(module.named_parameters()):
            params.append({"params": [param], "lr": self.base_lr * rate ** depth})


def test_custom_constructor_registered_with_force_and_chosen_by_name():
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayConstructor, force=True)
    OPTIM_WRAPPER_CONSTRUCTORS.register_module(module=LayerDecayConstructor, force=True)
    model = Tiny()
    wrapper = build_optim_wrapper(model, {"constructor": "LayerDecayConstructor",
                                          "optimizer": SGD, "paramwise_cfg": {"decay_rate": 0.5}})
    assert [g["lr"] for g in wrapper.optimizer.param_groups][:3] == [0.1, 0.05, 0.025]
    rows = LayerDecayConstructor({"optimizer": SGD}, {"decay_rate": 0.5}).describe(model)
    assert {row.rule for row in rows} == {"LayerDecayConstructor.add_params"}
    with pytest.raises(ConfigError, match="unknown key 'decay_rat'; did you mean 'decay_rate'"):
        LayerDecayConstructor({"optimizer": SGD}, {"decay_rat": 0.5})
