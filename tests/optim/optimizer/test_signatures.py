"""Constructors take MMEngine's arguments in MMEngine's positional order.

Checked against MMEngine's own classes: every parameter MMEngine's signature has comes in
the same position, with the same kind and default, so a call written for MMEngine binds
the same way; accelwrap may only add keyword parameters after them (``accelerator``).
"""

import inspect

import mmengine.optim as mm
import pytest
import torch

import accelwrap.optim as aw
from tests.optim.optimizer.wrapper_cases import make_model, make_optimizer

CLASSES = ["OptimWrapper", "AmpOptimWrapper", "ApexOptimWrapper", "OptimWrapperDict",
           "DefaultOptimWrapperConstructor", "ZeroRedundancyOptimizer"]


def parameters(cls: type) -> list[tuple[str, object, object]]:
    """(name, kind, default) of each parameter, ``**kwargs`` last (it may absorb additions)."""
    params = inspect.signature(cls).parameters.values()
    return [(p.name, p.kind, p.default) for p in params]


@pytest.mark.parametrize("name", CLASSES)
def test_mmengine_parameters_come_first_in_mmengine_order(name):
    theirs = [p for p in parameters(getattr(mm, name)) if p[1] != inspect.Parameter.VAR_KEYWORD]
    ours = parameters(getattr(aw, name))
    assert ours[:len(theirs)] == theirs
    extra = ours[len(theirs):]
    assert all(kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
               or default is not inspect.Parameter.empty for _, kind, default in extra)


def test_amp_optim_wrapper_binds_loss_scale_positionally_as_in_mmengine():
    optimizer = make_optimizer("sgd", make_model())
    wrapper = aw.AmpOptimWrapper(512.0, "bfloat16", optimizer=optimizer)
    assert wrapper.cast_dtype == torch.bfloat16 and wrapper.optimizer is optimizer


def test_an_optimizer_passed_where_mmengine_expects_loss_scale_names_the_fix():
    with pytest.raises(TypeError, match=r"optimizer=") as info:
        aw.AmpOptimWrapper(make_optimizer("sgd", make_model()))
    assert "loss_scale" in str(info.value)


def test_zero_redundancy_optimizer_needs_optimizer_type_as_in_mmengine():
    params = list(make_model().parameters())
    with pytest.raises(TypeError, match="optimizer_type"):
        mm.ZeroRedundancyOptimizer(params)
    with pytest.raises(TypeError, match="optimizer_type"):
        aw.ZeroRedundancyOptimizer(params)
