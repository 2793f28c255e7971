"""Bad input to the optimizer layer raises what MMEngine raises, so ported ``except`` works.

Each case is run on MMEngine and on accelwrap: accelwrap's error must be an instance of
the type MMEngine raised, and carry MMEngine's phrase (which ported tests match with
``assertRaisesRegex``) besides its own detail.
"""

import mmengine.optim as mm
import pytest
import torch
from torch import nn

import accelwrap.optim as aw

SGD = {"type": "SGD", "lr": 0.1, "momentum": 0.9}


class Shared(nn.Module):
    """One layer reached through two containers (``a.0`` and ``b.0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(2, 2))
        self.b = nn.Sequential(self.a[0])


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)


CASES = {
    "accumulative_counts=0": (
        lambda lib: lib.OptimWrapper(optimizer(), accumulative_counts=0), None),
    "clip_grad=[]": (
        lambda lib: lib.OptimWrapper(optimizer(), clip_grad=[]), "If `clip_grad` is not None"),
    "a dict member that is no wrapper": (
        lambda lib: lib.OptimWrapperDict(gen=optimizer()), "`OptimWrapperDict` only accept"),
    "custom_keys not a dict": (
        lambda lib: lib.DefaultOptimWrapperConstructor({"optimizer": SGD},
                                                       {"custom_keys": [0.1]}), None),
    "decay mult without weight_decay": (
        lambda lib: lib.DefaultOptimWrapperConstructor({"optimizer": SGD},
                                                       {"bias_decay_mult": 1}), None),
    "a shared parameter without bypass_duplicate": (
        lambda lib: lib.DefaultOptimWrapperConstructor({"optimizer": SGD},
                                                       {"bias_lr_mult": 2.0})(Shared()),
        "some parameters appear in more than one parameter group"),
}


@pytest.mark.parametrize("case", CASES)
def test_error_is_an_instance_of_what_mmengine_raises(case):
    call, phrase = CASES[case]
    with pytest.raises(Exception) as theirs:
        call(mm)
    with pytest.raises(type(theirs.value)) as ours:
        call(aw)
    if phrase is not None:
        assert phrase in str(theirs.value) and phrase in str(ours.value)


@pytest.mark.parametrize("method", ["update_params", "backward", "step"])
def test_optim_wrapper_dict_refuses_with_mmengines_sentence(method):
    args = (torch.tensor(1.0),) if method != "step" else ()
    phrase = f"`{method}` should be called by each optimizer separately"
    for lib in (mm, aw):
        wrappers = lib.OptimWrapperDict(gen=lib.OptimWrapper(optimizer()))
        with pytest.raises(NotImplementedError, match=phrase):
            getattr(wrappers, method)(*args)


def test_an_empty_wrapper_config_is_refused_as_mmengine_refuses_it():
    for lib in (mm, aw):
        with pytest.raises(AssertionError, match="`optim_wrapper_cfg` must contain"):
            lib.build_optim_wrapper(nn.Linear(2, 2), {})
