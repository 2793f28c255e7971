"""value_types: YAML values against annotations and defaults."""

from __future__ import annotations

from typing import Literal

import pytest
import torch

from accelwrap.checks.value_types import fits, value_problems


@pytest.mark.parametrize("annotation, value, expected", [
    (float, 1, True), (float, True, False), (int, 1.5, False), (bool, 0, False),
    (str, "a", True), (float | None, None, True), (float | torch.Tensor, "x", False),
    (list[int], [1, 2], True), (list[int], [1, "a"], False), (list[int], 3, False),
    (tuple[float, float], [0.9, 0.99], True), (tuple[float, float], [0.9], False),
    (dict[str, float], {"a": 1.0}, True), (dict, [1], False),
    (Literal["min", "max"], "mean", False), (Literal["min", "max"], "min", True),
    (torch.nn.Module, {"type": "Net"}, None), (torch.device, "cpu", None),
])
def test_fits(annotation, value, expected):
    assert fits(annotation, value) is expected


def test_value_problems_names_each_misfit_and_skips_unknowns():
    problems = dict(value_problems(torch.optim.AdamW,
                                   {"lr": "fast", "betas": [0.9, "x"], "eps": 1e-8, "nope": 1}))
    assert set(problems) == {"lr", "betas"}
    assert "'fast' (str)" in problems["lr"]


def test_default_stands_in_for_missing_annotation():
    def target(gamma=0.1, milestones=(), name=None):
        return gamma, milestones, name

    problems = dict(value_problems(target, {"gamma": "x", "milestones": 3, "name": 5}))
    assert set(problems) == {"gamma", "milestones"}
