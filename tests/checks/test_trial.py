"""Trial builds: a refused value is blamed on the right key, and nothing valid is refused."""

from __future__ import annotations

import inspect

import pytest
import torch

from accelwrap.checks.trial import (
    optimizer_trial,
    scheduler_trials,
    stand_in_optimizer,
    trial_problems,
    wrapper_trial,
)
from accelwrap.optim import AmpOptimWrapper, OptimWrapper
from accelwrap.registry import OPTIMIZERS, PARAM_SCHEDULERS


def window(begin: int = 0, end: int = 10, mode: str = "linear") -> None:
    """A stand-in constructor: ``end`` must exceed ``begin``; ``mode`` is a choice."""
    if end <= begin:
        raise ValueError(f"end should be larger than begin, got begin={begin}, end={end}")
    if mode not in ("linear", "cos"):
        raise ValueError(f"unknown mode {mode!r}")


def build(args: dict) -> None:
    window(**args)


def test_the_key_whose_default_makes_it_build_is_blamed():
    assert trial_problems(window, build, {"mode": "sin", "begin": 1}, "s") == [
        "s.mode: 'sin' is refused by window: unknown mode 'sin' (mode defaults to 'linear')"]


def test_of_two_keys_that_each_explain_it_the_ones_the_error_names_are_kept():
    # Leaving out either begin or end builds; both are named by the message.
    problems = trial_problems(window, build, {"begin": 5, "end": 3, "mode": "cos"}, "s")
    assert [p.split(":")[0] for p in problems] == ["s.begin", "s.end"]


def test_two_bad_keys_are_each_blamed_by_building_them_alone():
    problems = trial_problems(window, build, {"begin": 20, "mode": "sin"}, "s")
    assert [p.split(":")[0] for p in problems] == ["s.begin", "s.mode"]


def test_a_refusal_no_single_key_explains_names_the_node():
    def pair(a: int, b: int) -> None:  # both required: neither can be left out or tried alone
        if a > b:
            raise ValueError("a must not exceed b")

    assert trial_problems(pair, lambda k: pair(**k), {"a": 3, "b": 1}, "n") == [
        "n: pair(a=3, b=1) is refused by pair: a must not exceed b"]


def test_a_failure_that_is_not_a_refused_value_is_not_reported():
    def needs_a_gpu(**kwargs) -> None:
        raise RuntimeError("CUDA is not available")

    assert trial_problems(needs_a_gpu, lambda k: needs_a_gpu(**k), {"x": 1}, "n") == []


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"])
def test_each_torch_optimizer_with_its_defaults_and_a_learning_rate_is_accepted(name):
    assert optimizer_trial({"type": name, "lr": 0.01}, "o") == []
    assert optimizer_trial({"type": name, "lr": -0.01}, "o")[0].startswith("o.lr: -0.01 ")


def test_optimizers_outside_torch_optim_are_not_tried():
    assert "ZeroRedundancyOptimizer" in OPTIMIZERS
    assert optimizer_trial({"type": "ZeroRedundancyOptimizer", "optimizer_class": "SGD"},
                           "o") == []
    assert stand_in_optimizer({"type": "ZeroRedundancyOptimizer"}) is None
    assert stand_in_optimizer({"type": "SGD", "lr": -1}).defaults["lr"] == 0.001  # its default


def test_every_registered_scheduler_with_its_required_arguments_builds():
    required = {"milestones": [2], "step_size": 2, "gamma": 0.5, "periods": [5],
                "restart_weights": [1], "param_name": "lr", "eta_max": 0.1}
    for name in PARAM_SCHEDULERS.keys():
        params = inspect.signature(PARAM_SCHEDULERS.get(name)).parameters
        args = {k: v for k, v in required.items() if k in params}
        assert scheduler_trials([{"type": name, **args}], {"type": "SGD", "lr": 0.1,
                                                           "momentum": 0.9}, "p") == [], name


def test_the_run_length_is_the_default_end_as_in_training():
    late = [{"type": "LinearLR", "begin": 12}]
    assert scheduler_trials(late, {"type": "SGD", "lr": 0.1}, "p", run_length=(20, None)) == []
    (problem,) = scheduler_trials(late, {"type": "SGD", "lr": 0.1}, "p", run_length=(10, None))
    assert problem.startswith("p.0.begin: 12 is refused by LinearLR: end should be larger "
                              "than begin, but got begin=12, end=10")


def test_wrappers_judge_their_own_settings():
    assert wrapper_trial(OptimWrapper, {"clip_grad": {"max_norm": 1.0}}, "w") == []
    assert wrapper_trial(AmpOptimWrapper, {"dtype": "bfloat16"}, "w") == []
    (problem,) = wrapper_trial(AmpOptimWrapper, {"dtype": "int8"}, "w")
    assert problem.startswith("w.dtype: 'int8' is refused by AmpOptimWrapper")

    class Outside(torch.optim.Optimizer):
        """Not accelwrap's: never built by a check."""

    assert wrapper_trial(Outside, {"anything": -1}, "w") == []


def test_a_key_refused_beside_another_bad_one_is_explained_with_the_configs_values():
    """Two bad keys: each reason is given with the config's other sound values (here
    ``end`` and ``by_epoch``), not with their defaults."""
    from accelwrap.checks.trial import trial_problems

    def window(begin=0, end=10, factor=0.5, by_epoch=True):
        if not 0 < factor <= 1:
            raise ValueError(f"factor must be in (0, 1], got {factor}")
        if end <= begin:
            unit = "epochs" if by_epoch else "iterations"
            raise ValueError(f"end must be larger than begin, got begin={begin}, end={end} "
                             f"in {unit}")

    args = {"begin": 10, "end": 5, "factor": 2.0, "by_epoch": False}
    problems = trial_problems(window, lambda a: window(**a), args, "param_scheduler.0")
    assert len(problems) == 2, problems
    begin = next(p for p in problems if p.startswith("param_scheduler.0.begin: 10"))
    assert "got begin=10, end=5 in iterations" in begin
    assert any(p.startswith("param_scheduler.0.factor: 2.0") for p in problems)
