"""Resume with an edited schedule: from the first resumed step, a fresh run of the edited one.

A run is stopped (mid-window, or exactly at its old ``end``), its optimizer and scheduler
states are saved, and a scheduler built with edited arguments loads them. The value at
every resumed step must equal MMEngine's *fresh* scheduler of the edited arguments,
stepped the same number of times (MMEngine itself cannot do this: its state dict carries
the old configuration).
"""

from __future__ import annotations

import warnings

import mmengine.optim  # noqa: F401 - fills MMEngine's registry
import pytest
import torch
from mmengine.registry import PARAM_SCHEDULERS as MM_SCHEDULERS

from accelwrap.registry import PARAM_SCHEDULERS
from tests.optim.scheduler.test_parity import split_name
from tests.optim.scheduler.test_state import roundtrip

#: Family -> (old arguments, edited arguments); the old run ends at 10, the edited at 20.
EDITS = {
    "CosineAnnealing": (dict(T_max=10, end=10), dict(T_max=20, end=20)),
    "Step": (dict(step_size=3, end=10), dict(step_size=4, end=20)),
    "MultiStep": (dict(milestones=[3, 6], end=10), dict(milestones=[4, 12], end=20)),
    "Exponential": (dict(gamma=0.9, end=10), dict(gamma=0.8, end=20)),
    "Linear": (dict(start_factor=0.5, end=10), dict(start_factor=0.25, end=20)),
    "Constant": (dict(factor=0.5, end=10), dict(factor=0.25, end=20)),
    "Poly": (dict(eta_min=0.001, end=10), dict(eta_min=0.001, power=2.0, end=20)),
    "CosineRestart": (dict(periods=[5, 5], restart_weights=[1, 0.5], eta_min=0.0),
                      dict(periods=[8, 12], restart_weights=[1, 0.5], eta_min=0.0)),
    "OneCycle": (dict(eta_max=0.1, total_steps=10, end=10),
                 dict(eta_max=0.1, total_steps=20, end=20)),
}
NAMES = sorted(n for n in PARAM_SCHEDULERS.keys()
               if split_name(n)[0] in EDITS and n in MM_SCHEDULERS.module_dict)


def optimizer() -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))]
    return torch.optim.SGD([{"params": params[:1]}, {"params": params[1:], "lr": 0.5}],
                           lr=0.1, momentum=0.9, weight_decay=0.01)


def build(registry, name: str, which: int, opt: torch.optim.Optimizer):
    family, suffix = split_name(name)
    args = dict(EDITS[family][which], by_epoch=False)
    if suffix == "ParamScheduler":
        args["param_name"] = "lr" if family == "OneCycle" else "weight_decay"
    return registry.get(name)(opt, **args)


def values(scheduler, opt, steps: int) -> list[float]:
    """The scheduled value of every group at each of ``steps`` iterations, stepping after."""
    key = scheduler.param_name
    out = []
    for _ in range(steps):
        out += [group[key] for group in opt.param_groups]
        opt.step()
        scheduler.step()
    return out


@pytest.mark.parametrize("stop", [5, 10], ids=["mid-window", "at-old-end"])
@pytest.mark.parametrize("name", NAMES)
def test_resumed_run_follows_the_edited_schedule_from_its_first_step(name, stop):
    warnings.simplefilter("ignore")
    opt = optimizer()
    old = build(PARAM_SCHEDULERS, name, 0, opt)
    values(old, opt, stop)
    saved_opt, saved = roundtrip(opt.state_dict()), roundtrip(old.state_dict())

    opt = optimizer()
    edited = build(PARAM_SCHEDULERS, name, 1, opt)
    opt.load_state_dict(saved_opt)
    edited.load_state_dict(saved)
    got = values(edited, opt, 19 - stop)

    reference_opt = optimizer()
    reference = build(MM_SCHEDULERS, name, 1, reference_opt)
    expected = values(reference, reference_opt, 19)[2 * stop:]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
