"""OptimWrapperDict against MMEngine's: names, learning rates, momenta, state, GAN-style updates."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper as MMOptimWrapper
from mmengine.optim import OptimWrapperDict as MMOptimWrapperDict

from accelwrap.optim import OptimWrapper, OptimWrapperDict, make_accelerator, prepare
from tests.optim.optimizer.wrapper_cases import (
    assert_same,
    make_data,
    make_model,
    make_optimizer,
    params_of,
)


def build(wrapper_cls, dict_cls, gen_model, disc_model):
    """gen: SGD, updated every step; disc: two-group AdamW accumulating 3 steps."""
    return dict_cls(
        gen=wrapper_cls(optimizer=make_optimizer("sgd", gen_model), clip_grad=dict(max_norm=0.5)),
        disc=wrapper_cls(optimizer=make_optimizer("adamw", disc_model), accumulative_counts=3))


def gan_steps(wrappers, gen_model, disc_model, data) -> None:
    """Alternate the two members, each with its own loss, context and counter."""
    wrappers["disc"].initialize_count_status(disc_model, 0, len(data))
    for x, y in data:
        with wrappers["gen"].optim_context(gen_model):
            fake = gen_model(x)
        wrappers["gen"].update_params(F.mse_loss(fake, y))
        with wrappers["disc"].optim_context(disc_model):
            loss = F.mse_loss(disc_model(x), fake.detach())
        wrappers["disc"].update_params(loss)


@pytest.mark.parametrize("with_accelerator", [False, True])
def test_matches_mmengine(with_accelerator):
    data = make_data(8)
    mm_models = make_model(0), make_model(1)
    mm = build(MMOptimWrapper, MMOptimWrapperDict, *mm_models)
    gan_steps(mm, *mm_models, data)
    models = make_model(0), make_model(1)
    ours = build(OptimWrapper, OptimWrapperDict, *models)
    if with_accelerator:
        *models, ours = prepare(make_accelerator(cpu=True), *models, ours)
        assert all(w.accelerator is not None for w in ours.values())
    gan_steps(ours, *models, data)
    for model, mm_model in zip(models, mm_models):
        assert_same(params_of(model), params_of(mm_model))
    assert ours.get_lr() == mm.get_lr() == {"gen.lr": [0.1], "disc.base_lr": [0.05],
                                            "disc.lr": [0.05, 0.01]}
    assert ours.get_momentum() == mm.get_momentum()
    assert {k: len(v) for k, v in ours.param_groups.items()} == {
        k: len(v) for k, v in mm.param_groups.items()}


def test_state_dict_round_trip():
    data = make_data(8)
    models = make_model(0), make_model(1)
    ours = build(OptimWrapper, OptimWrapperDict, *models)
    gan_steps(ours, *models, data)
    state = ours.state_dict()
    assert set(state) == {"gen", "disc"} and "base_param_settings" in state["disc"]
    fresh = build(OptimWrapper, OptimWrapperDict, *models)
    fresh.load_state_dict(state)
    assert fresh.state_dict()["disc"]["state"].keys() == state["disc"]["state"].keys()
    loaded = fresh.state_dict()
    for name in ("gen", "disc"):  # the optimizer state itself, not only its keys
        for index, slots in state[name]["state"].items():
            for slot, value in slots.items():
                assert torch.equal(loaded[name]["state"][index][slot], value), (name, index, slot)
    assert loaded["disc"]["base_param_settings"]["lr"] == state["disc"]["base_param_settings"]["lr"]
    with pytest.raises(KeyError, match=r"'dsic' is not a member; did you mean 'disc'"):
        fresh.load_state_dict({"dsic": state["disc"]})


def test_mapping_methods_and_zero_grad():
    models = make_model(0), make_model(1)
    ours = build(OptimWrapper, OptimWrapperDict, *models)
    assert list(ours.keys()) == list(ours) == ["gen", "disc"] and len(ours) == 2
    assert "gen" in ours and "other" not in ours
    assert [name for name, _ in ours.items()] == ["gen", "disc"]
    assert all(isinstance(w, OptimWrapper) for w in ours.values())
    for model in models:
        model(make_data(1)[0][0]).sum().backward()
    ours.zero_grad()
    assert all(p.grad is None for model in models for p in model.parameters())
    with pytest.raises(KeyError, match=r"no member 'gne'; did you mean 'gen'"):
        ours["gne"]
    assert "name: gen" in repr(ours)


@pytest.mark.parametrize("call", ["update_params", "backward", "step", "optim_context"])
def test_ambiguous_calls_raise_like_mmengine(call):
    ours = build(OptimWrapper, OptimWrapperDict, make_model(0), make_model(1))
    with pytest.raises(NotImplementedError, match=rf"OptimWrapperDict.{call} is ambiguous.*"
                                                  rf"optim_wrapper\['gen'\].{call}"):
        getattr(ours, call)(*([None] if call != "step" else []))


def test_only_wrappers_are_accepted():
    with pytest.raises(TypeError, match=r"'gen' must be an OptimWrapper, got SGD"):
        OptimWrapperDict(gen=make_optimizer("sgd", make_model()))
