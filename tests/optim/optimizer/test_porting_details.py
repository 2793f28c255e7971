"""Details an MMEngine user's code relies on, checked against MMEngine itself.

A subclass overriding ``backward(loss, **kwargs)`` that passes ``kwargs`` on to
``loss.backward`` (MMEngine's own pattern); the exception types MMEngine raises for the
same bad input (accelwrap's are more precise, and also MMEngine's type); the
``clip_func`` / ``grad_name`` attributes of a wrapper that clips.
"""

from __future__ import annotations

import warnings

import mmengine.optim as mm
import pytest
import torch
from torch import nn

import accelwrap.optim as aw


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def _subclass(base: type) -> type:
    class PassesKwargs(base):
        def backward(self, loss, **kwargs):
            self.seen = sorted(kwargs)
            super().backward(loss, **kwargs)  # MMEngine's backward ends in loss.backward(**kwargs)
    return PassesKwargs


def test_a_subclass_passing_backward_kwargs_on_updates_like_mmengine():
    params = {}
    for lib in (mm, aw):
        model = _model()
        wrapper = _subclass(lib.OptimWrapper)(torch.optim.SGD(model.parameters(), lr=0.1))
        wrapper.update_params(model(torch.ones(4, 3)).pow(2).sum())
        params[lib.__name__] = [p.detach().clone() for p in model.parameters()]
        assert wrapper.seen == []  # nothing of accelwrap's own reached loss.backward
    for ours, theirs in zip(params["accelwrap.optim"], params["mmengine.optim"]):
        assert torch.equal(ours, theirs)


def _raised(call) -> BaseException:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as err:  # noqa: BLE001 - the type is what is compared
            return err
    raise AssertionError("no error raised")


CASES = {
    "no optimizer key": lambda lib: lib.build_optim_wrapper(_model(), dict(type="OptimWrapper")),
    "unknown optimizer type": lambda lib: lib.build_optim_wrapper(
        _model(), dict(optimizer=dict(type="NoSuchOptimizer", lr=0.1))),
    "a model as the optimizer": lambda lib: lib.OptimWrapper(_model()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_an_error_that_is_also_mmengines_type(case):
    theirs = _raised(lambda: CASES[case](mm))
    ours = _raised(lambda: CASES[case](aw))
    assert isinstance(ours, type(theirs)), (type(ours).__mro__, type(theirs))
    assert type(ours).__module__.startswith("accelwrap") or type(ours) is type(theirs)


@pytest.mark.parametrize("clip_grad",
                         [None, dict(max_norm=1.0), dict(type="value", clip_value=0.5)],
                         ids=["no clipping", "norm", "value"])
def test_clip_func_and_grad_name_are_mmengines(clip_grad):
    made = [lib.OptimWrapper(torch.optim.SGD(_model().parameters(), lr=0.1),
                             clip_grad=None if clip_grad is None else dict(clip_grad))
            for lib in (mm, aw)]
    for name in ("clip_func", "grad_name"):
        assert hasattr(made[0], name) == hasattr(made[1], name), name
        if hasattr(made[0], name):
            assert getattr(made[1], name) == getattr(made[0], name), name
