"""A scheduler state dict saved by MMEngine loads into accelwrap's scheduler of the same config.

MMEngine's scheduler is stepped ``k`` times; its optimizer state and its scheduler state are
loaded into a fresh accelwrap run (as a resume does) and both are stepped on. The expected
values are MMEngine's own continued run.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import accelwrap.optim.scheduler as ours

CASES = [
    ("LinearLR", dict(start_factor=0.1, end=10)),
    ("LinearLR", dict(start_factor=0.25, end_factor=0.5, begin=3, end=9)),
    ("MultiStepLR", dict(milestones=[3, 6, 6], gamma=0.5)),
    ("CosineAnnealingLR", dict(T_max=10, eta_min=0.01)),
    ("CosineAnnealingLR", dict(eta_min_ratio=0.1, begin=2, end=12)),
    ("StepLR", dict(step_size=3, gamma=0.7)),
    ("ExponentialLR", dict(gamma=0.9, end=8)),
    ("PolyLR", dict(power=2.0, eta_min=0.001, end=11)),
    ("CosineRestartLR", dict(periods=[4, 6], restart_weights=[1, 0.5], eta_min=0.0)),
    ("OneCycleLR", dict(eta_max=0.5, total_steps=12, end=12)),
    ("CosineAnnealingMomentum", dict(T_max=8, eta_min=0.5)),
]
STEPS = 16


def make(lib, name, kwargs, opt):
    return getattr(lib, name)(opt, by_epoch=False, **kwargs)


def sgd():
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


def values(opt):
    return [v for g in opt.param_groups for v in (g["lr"], g["momentum"])]


def resumed(names_kwargs, k):
    """(MMEngine's continued values, accelwrap's after loading MMEngine's state at step k)."""
    import mmengine.optim.scheduler as mm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = sgd()
        theirs = [make(mm, n, kw, opt) for n, kw in names_kwargs]
        for _ in range(k):
            opt.step()
            for s in theirs:
                s.step()
        opt_state = opt.state_dict()
        states = [s.state_dict() for s in theirs]
        opt2 = sgd()
        mine = [make(ours, n, kw, opt2) for n, kw in names_kwargs]
        opt2.load_state_dict(opt_state)
        for s, state in zip(mine, states):
            s.load_state_dict(state)
        expected, got = values(opt), values(opt2)
        for _ in range(STEPS - k):
            for o, scheds in ((opt, theirs), (opt2, mine)):
                o.step()
                for s in scheds:
                    s.step()
            expected += values(opt)
            got += values(opt2)
    return expected, got


@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("k", [0, 1, 4, 9, 14])
def test_mmengine_state_continues_with_mmengine_values(name, kwargs, k):
    expected, got = resumed([(name, kwargs)], k)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_chained_warmup_and_cosine(k):
    chain = [("LinearLR", dict(start_factor=0.1, end=5)),
             ("CosineAnnealingLR", dict(eta_min=0.001, begin=2, end=14)),
             ("MultiStepLR", dict(milestones=[6, 10], gamma=0.5))]
    expected, got = resumed(chain, k)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_own_state_still_needs_its_keys():
    sched = ours.LinearLR(sgd(), end=4, by_epoch=False)
    state = sched.state_dict()
    del state["_anchor"]
    with pytest.raises(ValueError, match=r"LinearLR.load_state_dict: missing keys \['_anchor'\]"):
        sched.load_state_dict(state)


def test_reduce_on_plateau_state_without_base_values():
    import mmengine.optim.scheduler as mm

    def run(lib, opt, losses, sched=None):
        sched = sched or lib.ReduceOnPlateauLR(opt, monitor="loss", patience=1, factor=0.5)
        lrs = []
        for loss in losses:
            opt.step()
            sched.step()
            sched.step({"loss": loss})
            lrs.append(opt.param_groups[0]["lr"])
        return sched, lrs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = sgd()
        theirs, _ = run(mm, opt, [1.0, 1.0, 1.0, 0.5, 0.6])
        opt2 = sgd()
        mine = ours.ReduceOnPlateauLR(opt2, monitor="loss", patience=1, factor=0.5)
        opt2.load_state_dict(opt.state_dict())
        mine.load_state_dict(theirs.state_dict())
        later = [0.7, 0.8, 0.9, 0.4, 0.5, 0.6, 0.7]
        assert run(ours, opt2, later, mine)[1] == pytest.approx(run(mm, opt, later, theirs)[1])
