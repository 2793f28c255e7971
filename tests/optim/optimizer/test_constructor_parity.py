"""DefaultOptimWrapperConstructor against MMEngine's: the same settings for every parameter.

Compared per parameter (every key of the group it lands in), not per group, since
``merge_groups`` changes the grouping but must not change any number.
"""

from __future__ import annotations

import copy
import sys
import textwrap

import pytest
import torch
from torch import nn

mmengine_optim = pytest.importorskip("mmengine.optim")

from accelwrap.optim import build_optim_wrapper  # noqa: E402


class Block(nn.Module):
    def __init__(self, shared: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dwconv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gn = nn.GroupNorm(2, 8)
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.gn(self.dwconv(self.bn(self.conv(x)).relu()))
        return self.shared(x.mean((2, 3)))


class ParityModel(nn.Module):
    """Conv, BN, depthwise conv, GroupNorm, LayerNorm, Linear, Embedding, a bare
    parameter at the root, a module reached under two names and a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        shared = nn.Linear(8, 8)
        self.backbone = Block(shared)
        self.neck = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
        self.neck_shared = shared
        self.embed = nn.Embedding(10, 8)
        self.head = nn.Linear(8, 4)
        self.scale = nn.Parameter(torch.ones(4))
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        feats = self.neck(self.backbone(x)) + self.neck_shared(self.embed(tokens))
        return self.frozen(self.head(feats) * self.scale)


CUSTOM = {"backbone": {"lr_mult": 0.1}, "backbone.gn": {"decay_mult": 0.0},
          "head": {"lr_mult": 10.0, "momentum": 0.5}, "scale": {"lr_mult": 0.0}}
# 'dwconv' and 'weight' are equally long and both match 'backbone.dwconv.weight'.
TIED = {"dwconv": {"lr_mult": 0.5}, "weight": {"decay_mult": 0.5}, "neck.1": {"lr_mult": 3.0}}
ALL_MULTS = {"bias_lr_mult": 2.0, "bias_decay_mult": 0.5, "norm_decay_mult": 0.0,
             "dwconv_decay_mult": 0.1, "flat_decay_mult": 0.3}

PARAMWISE = {
    "none": None,
    "empty": {},
    "bypass_only": {"bypass_duplicate": True},
    "bias_lr_mult": {"bias_lr_mult": 2.0},
    "bias_decay_mult": {"bias_decay_mult": 0.5},
    "norm_decay_mult": {"norm_decay_mult": 0.0},
    "dwconv_decay_mult": {"dwconv_decay_mult": 0.1},
    "flat_decay_mult": {"flat_decay_mult": 0.3},
    "dcn_offset_lr_mult_without_dcn": {"dcn_offset_lr_mult": 0.1},
    "all_mults": ALL_MULTS,
    "norm_then_bias": {"bias_decay_mult": 0.5, "dwconv_decay_mult": 0.2},
    "custom_keys": {"custom_keys": CUSTOM},
    "custom_keys_tied": {"custom_keys": TIED},
    "custom_keys_and_mults": {"custom_keys": CUSTOM, **ALL_MULTS},
}
OPTIMIZERS = {
    "sgd": {"type": "SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
    "adamw": {"type": "AdamW", "lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 0.05},
}


def settings_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict | None]:
    """Every parameter name -> the settings of its group (None when not optimized)."""
    by_id = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in by_id, "a parameter is in two groups"
            by_id[id(param)] = {k: v for k, v in group.items() if k != "params"}
    return {name: by_id.get(id(p)) for name, p in model.named_parameters(remove_duplicate=False)}


def with_bypass(paramwise: dict | None) -> dict | None:
    return {**paramwise, "bypass_duplicate": True} if paramwise else paramwise


def build_both(model: nn.Module, optimizer_cfg: dict, paramwise: dict | None,
               merge: bool = False):
    mm_cfg = {"optimizer": copy.deepcopy(optimizer_cfg)}
    ours_cfg = {"optimizer": copy.deepcopy(optimizer_cfg)}
    if paramwise is not None:
        mm_cfg["paramwise_cfg"] = copy.deepcopy(paramwise)
        ours_cfg["paramwise_cfg"] = {**paramwise, "merge_groups": True} if merge else paramwise
    return (mmengine_optim.build_optim_wrapper(model, mm_cfg),
            build_optim_wrapper(model, ours_cfg))


# merge_groups is itself a paramwise_cfg key, so only cases with a paramwise_cfg merge.
CASES = [pytest.param(case, merge, id=f"{case}-{'merged' if merge else 'per_param'}")
         for case in PARAMWISE for merge in (False, True) if PARAMWISE[case] or not merge]


@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
@pytest.mark.parametrize(("case", "merge"), CASES)
def test_every_parameter_gets_mmengines_settings(case, optimizer_name, merge):
    model = ParityModel()
    theirs, ours = build_both(model, OPTIMIZERS[optimizer_name], with_bypass(PARAMWISE[case]),
                              merge)
    expected = settings_by_name(theirs.optimizer, model)
    assert settings_by_name(ours.optimizer, model) == expected
    n_theirs, n_ours = len(theirs.optimizer.param_groups), len(ours.optimizer.param_groups)
    if merge:
        distinct = {repr(sorted(s.items())) for s in expected.values() if s is not None}
        assert n_ours == len(distinct) < n_theirs
    else:
        assert n_ours == n_theirs


def test_case_table_exercises_every_rule():
    """Guard the parametrization: each rule changes some parameter somewhere."""
    model = ParityModel()
    base = OPTIMIZERS["sgd"]
    plain = settings_by_name(build_both(model, base, {"bypass_duplicate": True})[1].optimizer,
                             model)
    for case in ("bias_lr_mult", "bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult",
                 "flat_decay_mult", "custom_keys", "custom_keys_tied"):
        changed = settings_by_name(
            build_both(model, base, with_bypass(PARAMWISE[case]))[1].optimizer, model)
        assert changed != plain, case


@pytest.mark.parametrize("case", ["none", "all_mults", "custom_keys_and_mults"])
def test_training_steps_match_mmengine(case):
    torch.manual_seed(0)
    model_ref = ParityModel()
    model_ours = copy.deepcopy(model_ref)
    paramwise = with_bypass(PARAMWISE[case])
    theirs = mmengine_optim.build_optim_wrapper(
        model_ref, {"optimizer": dict(OPTIMIZERS["sgd"]), "paramwise_cfg": paramwise,
                    "accumulative_counts": 2})
    ours = build_optim_wrapper(model_ours, {"optimizer": OPTIMIZERS["sgd"],
                                            "paramwise_cfg": paramwise, "accumulative_counts": 2})
    for step in range(4):
        x, tokens = torch.randn(4, 3, 6, 6), torch.randint(0, 10, (4,))
        for model, wrapper in ((model_ref, theirs), (model_ours, ours)):
            with wrapper.optim_context(model):
                loss = model(x, tokens).square().mean()
            wrapper.update_params(loss)
    for (name, ref), (_, got) in zip(model_ref.state_dict().items(),
                                     model_ours.state_dict().items()):
        torch.testing.assert_close(got, ref, rtol=0, atol=0, msg=name)


def test_shared_module_without_bypass_fails_in_both():
    model = ParityModel()
    with pytest.raises(ValueError, match="more than one parameter group"):
        mmengine_optim.build_optim_wrapper(model, {"optimizer": dict(OPTIMIZERS["sgd"]),
                                                   "paramwise_cfg": {"bias_lr_mult": 2.0}})
    with pytest.raises(ValueError) as info:
        build_optim_wrapper(model, {"optimizer": OPTIMIZERS["sgd"],
                                    "paramwise_cfg": {"bias_lr_mult": 2.0}})
    message = str(info.value)
    assert "'backbone.shared.weight'" in message and "'neck_shared.weight'" in message
    assert "bypass_duplicate=True" in message


def test_bypass_duplicate_optimizes_shared_parameters_once():
    model = ParityModel()
    _, ours = build_both(model, OPTIMIZERS["sgd"], {"bias_lr_mult": 2.0, "bypass_duplicate": True})
    params = [p for g in ours.optimizer.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})
    assert any(p is model.neck_shared.weight for p in params)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in params} == trainable


FAKE_MMCV_OPS = textwrap.dedent("""
    import torch
    from torch import nn

    class DeformConv2d(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3))
            self.bias = nn.Parameter(torch.zeros(channels))

    class DeformConv2dPack(DeformConv2d):
        def __init__(self, channels):
            super().__init__(channels)
            self.conv_offset = nn.Conv2d(channels, 18, 3)

    class ModulatedDeformConv2d(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(channels, channels, 3, 3))
            self.conv_offset = nn.Conv2d(channels, 27, 3)
""")


@pytest.fixture
def fake_mmcv(tmp_path, monkeypatch):
    """A stand-in ``mmcv`` (absent here) whose ``ops`` has deformable-conv classes, so
    MMEngine's own DCN branch runs and can be compared."""
    package = tmp_path / "mmcv"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_ext.py").write_text("")
    (package / "ops.py").write_text(FAKE_MMCV_OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("mmcv.ops", fromlist=["ops"])
    for name in [n for n in sys.modules if n == "mmcv" or n.startswith("mmcv.")]:
        del sys.modules[name]


@pytest.mark.parametrize("paramwise", [
    {"dcn_offset_lr_mult": 0.1},
    {"dcn_offset_lr_mult": 0.1, **ALL_MULTS},
    {"bias_lr_mult": 2.0, "flat_decay_mult": 0.5, "bias_decay_mult": 0.3},
])
def test_deformable_conv_offsets_match_mmengine(fake_mmcv, paramwise):
    model = nn.Sequential(fake_mmcv.DeformConv2dPack(4), fake_mmcv.ModulatedDeformConv2d(4),
                          nn.Conv2d(4, 4, 1))
    theirs, ours = build_both(model, OPTIMIZERS["sgd"], paramwise)
    expected = settings_by_name(theirs.optimizer, model)
    assert settings_by_name(ours.optimizer, model) == expected
    if "dcn_offset_lr_mult" in paramwise:  # the MMEngine branch really ran
        assert expected["0.conv_offset.weight"]["lr"] == pytest.approx(0.001)
