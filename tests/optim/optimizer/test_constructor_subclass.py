"""Constructors written the MMEngine way, and custom_keys that match nothing.

An mmpretrain-style subclass (``LearningRateDecayOptimWrapperConstructor``: its own
``paramwise_cfg`` keys, an ``add_params`` override using ``self.base_lr``) is written once
against a base class and run on MMEngine's and on accelwrap's: the groups must agree.
"""

import warnings
from pathlib import Path

import mmengine.optim as mm
import pytest
import torch
from torch import nn

import accelwrap.optim as aw
from accelwrap.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS, DefaultScope, Registry
from accelwrap.tools.check import run_check

OPTIMIZER = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.05}
PARAMWISE = {"layer_decay_rate": 0.5, "num_layers": 3}


class Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(3, 3) for _ in range(3))
        self.head = nn.Linear(3, 1)


def layer_decay(base: type) -> type:
    """A subclass reading its own keys, as mmpretrain's layer-decay constructor does."""

    class LayerDecay(base):
        def add_params(self, params, module, prefix="", **kwargs):
            rate = self.paramwise_cfg["layer_decay_rate"]
            depth = self.paramwise_cfg["num_layers"] + 1
            for name, param in module.named_parameters():
                layer = int(name.split(".")[1]) + 1 if name.startswith("layers.") else depth
                group = {"params": [param], "lr": self.base_lr * rate ** (depth - layer),
                         "weight_decay": 0.0 if param.ndim == 1 else self.base_wd}
                if not self._is_in(group, params):
                    params.append(group)

    return LayerDecay


def lrs(optimizer: torch.optim.Optimizer) -> list[tuple[float, float]]:
    return [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups]


def test_a_subclass_with_its_own_keys_builds_mmengines_groups_and_warns_once():
    model = Layers()
    theirs = layer_decay(mm.DefaultOptimWrapperConstructor)(
        {"optimizer": OPTIMIZER}, PARAMWISE)(model)
    with pytest.warns(UserWarning, match=r"\['layer_decay_rate', 'num_layers'\].*"
                                         r"extra_paramwise_keys") as caught:
        ours = layer_decay(aw.DefaultOptimWrapperConstructor)(
            {"optimizer": OPTIMIZER}, PARAMWISE)(model)
    assert len(caught) == 1
    assert lrs(ours.optimizer) == lrs(theirs.optimizer)
    assert len(ours.optimizer.param_groups) == 8


def test_declared_keys_do_not_warn():
    cls = layer_decay(aw.DefaultOptimWrapperConstructor)
    cls.extra_paramwise_keys = ("layer_decay_rate", "num_layers")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cls({"optimizer": OPTIMIZER}, PARAMWISE)(Layers())


def test_the_default_constructor_still_refuses_an_unknown_key():
    with pytest.raises(ValueError, match="unknown key 'layer_decay_rate'"):
        aw.DefaultOptimWrapperConstructor({"optimizer": OPTIMIZER}, PARAMWISE)


@pytest.mark.parametrize("other", [[], [0], [2]])
def test_is_in_answers_as_mmengines(other):
    params = [nn.Parameter(torch.zeros(1)) for _ in range(3)]
    group = {"params": [params[0], params[1]]}
    existing = [{"params": [params[i]]} for i in other]
    ours = aw.DefaultOptimWrapperConstructor({"optimizer": OPTIMIZER})._is_in(group, existing)
    theirs = mm.DefaultOptimWrapperConstructor({"optimizer": OPTIMIZER})._is_in(group, existing)
    assert ours == theirs


def build(paramwise: dict):
    return aw.build_optim_wrapper(Layers(), {"optimizer": OPTIMIZER, "paramwise_cfg": paramwise})


def test_a_custom_key_matching_nothing_warns_with_at_most_five_near_names():
    keys = {"layers.9": {"lr_mult": 0.1}, "head": {"lr_mult": 2.0}}
    with pytest.warns(UserWarning, match=r"custom_keys\['layers.9'\] matches no parameter") as w:
        wrapper = build({"custom_keys": keys})
    message = str(w[0].message)
    assert "strict_custom_keys" in message
    assert 1 <= message.count("'layers.") <= 5
    head = [g for g in wrapper.optimizer.param_groups if g["lr"] == pytest.approx(2e-3)]
    assert len(head) == 2


def test_strict_custom_keys_makes_it_an_error():
    with pytest.raises(ValueError, match=r"custom_keys\['layers.9'\] matches no parameter"):
        build({"custom_keys": {"layers.9": {"lr_mult": 0.1}}, "strict_custom_keys": True})


def test_strict_custom_keys_must_be_a_bool():
    with pytest.raises(ValueError, match="strict_custom_keys: expected true or false"):
        build({"strict_custom_keys": "yes"})


@OPTIM_WRAPPER_CONSTRUCTORS.register_module(name="_LayerDecayForCheck", force=True)
class _LayerDecayForCheck(layer_decay(aw.DefaultOptimWrapperConstructor)):
    extra_paramwise_keys = ("layer_decay_rate", "num_layers")


def write(tmp_path, paramwise: str) -> str:
    path = tmp_path / "exp.yaml"
    base = Path(__file__).resolve().parents[3] / "configs" / "digits_adamw_cosine.yaml"
    path.write_text(f"_base_: {base}\noptim_wrapper:\n  paramwise_cfg: {paramwise}\n")
    return str(path)


def test_check_warns_about_an_unmatched_custom_key_and_strict_fails(tmp_path, capsys):
    path = write(tmp_path, "{custom_keys: {haed: {lr_mult: 0.1}}}")
    assert run_check(path) == 0
    err = capsys.readouterr().err
    assert "warning: optim_wrapper.paramwise_cfg.custom_keys['haed'] matches no parameter" in err
    strict = write(tmp_path, "{custom_keys: {haed: {lr_mult: 0.1}}, strict_custom_keys: true}")
    assert run_check(strict) == 1
    assert "custom_keys['haed'] matches no parameter" in capsys.readouterr().err


def test_check_accepts_a_subclass_with_its_own_keys(tmp_path, capsys):
    path = write(tmp_path, "{layer_decay_rate: 0.5, num_layers: 2}")
    assert run_check(path, ["+optim_wrapper.constructor=_LayerDecayForCheck"]) == 0, \
        capsys.readouterr().err


def test_check_accepts_a_matching_custom_key(tmp_path, capsys):
    assert run_check(write(tmp_path, "{custom_keys: {net: {lr_mult: 0.1}}}")) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_optimizer_of_a_child_registry_builds_under_its_default_scope():
    """A project's own optimizer in a child of OPTIMIZERS, found through DefaultScope."""
    class ProjectSGD(torch.optim.SGD):
        pass

    project = Registry("optimizer", parent=OPTIMIZERS, scope="_ctor_scope_test")
    project.register_module(module=ProjectSGD)
    try:
        with DefaultScope.overwrite_default_scope("_ctor_scope_test"):
            wrapper = aw.build_optim_wrapper(Layers(), {"optimizer": {"type": "ProjectSGD",
                                                                      "lr": 0.1}})
        assert type(wrapper.optimizer) is ProjectSGD
    finally:
        OPTIMIZERS.children.pop("_ctor_scope_test")
