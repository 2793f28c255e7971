"""Declared scheduler signatures carry types, so config checks can judge values."""

import inspect

import pytest

from accelwrap.checks.value_types import value_problems
from accelwrap.registry import PARAM_SCHEDULERS


@pytest.mark.parametrize("name", PARAM_SCHEDULERS.keys())
def test_every_argument_is_annotated(name):
    signature = inspect.signature(PARAM_SCHEDULERS.get(name))
    bare = [p.name for p in signature.parameters.values() if p.annotation is p.empty]
    assert bare == [], f"{name}: arguments without a type: {bare}"


def test_wrong_value_types_are_reported_and_right_ones_pass():
    cls = PARAM_SCHEDULERS.get("MultiStepLR")
    problems = dict(value_problems(cls, {"milestones": 6, "gamma": "fast", "by_epoch": True}))
    assert set(problems) == {"milestones", "gamma"}
    assert value_problems(cls, {"milestones": [1.5, 3], "gamma": 0.5, "end": 10}) == []
