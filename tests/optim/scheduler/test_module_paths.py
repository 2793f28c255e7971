"""MMEngine's module paths are the homes: each class declared by name in MMEngine's module."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import mmengine.optim.scheduler as mm_scheduler
import pytest
import torch
from torch.optim.lr_scheduler import LRScheduler

import accelwrap.optim.scheduler as scheduler_pkg
from accelwrap.optim.scheduler.base import ParamScheduler
from accelwrap.optim.scheduler.lr_scheduler import LRSchedulerMixin
from accelwrap.optim.scheduler.momentum_scheduler import MomentumSchedulerMixin
from accelwrap.optim.scheduler.param_scheduler import StepParamScheduler
from accelwrap.registry import PARAM_SCHEDULERS

MODULES = ["param_scheduler", "lr_scheduler", "momentum_scheduler"]
# accelwrap's public name for MMEngine's ``_ParamScheduler`` (the same class, also exported).
EXTRA = {"param_scheduler": {"ParamScheduler"}}


def ours(name: str):
    return importlib.import_module(f"accelwrap.optim.scheduler.{name}")


def theirs(name: str):
    return importlib.import_module(f"mmengine.optim.scheduler.{name}")


def defined_classes(module) -> dict[str, type]:
    """The classes ``module`` itself defines (not those it imports)."""
    return {n: v for n, v in vars(module).items()
            if inspect.isclass(v) and v.__module__ == module.__name__}


def scheduler_names(names, module) -> set[str]:
    return {n for n in names
            if inspect.isclass(getattr(module, n)) and issubclass(getattr(module, n), LRScheduler)}


@pytest.mark.parametrize("name", MODULES)
def test_all_is_a_static_literal(name):
    tree = ast.parse(Path(ours(name).__file__).read_text())
    values = [node.value for node in tree.body if isinstance(node, ast.Assign)
              and [getattr(t, "id", None) for t in node.targets] == ["__all__"]]
    assert len(values) == 1
    assert ast.literal_eval(values[0]) == ours(name).__all__
    assert all(hasattr(ours(name), n) for n in ours(name).__all__)


@pytest.mark.parametrize("name", MODULES)
def test_scheduler_names_equal_mmengines_module(name):
    mm = theirs(name)
    mm_names = {n for n, v in defined_classes(mm).items()
                if issubclass(v, mm_scheduler._ParamScheduler)}
    assert scheduler_names(ours(name).__all__, ours(name)) == mm_names | EXTRA.get(name, set())


@pytest.mark.parametrize("name", MODULES)
def test_mmengines_other_classes_exist_too(name):
    mm = theirs(name)
    others = {n for n, v in defined_classes(mm).items()
              if not issubclass(v, mm_scheduler._ParamScheduler)}
    assert {n for n in others if inspect.isclass(getattr(ours(name), n, None))} == others


def test_every_registered_scheduler_is_in_exactly_one_module():
    alls = {name: set(ours(name).__all__) for name in MODULES}
    for key in PARAM_SCHEDULERS.keys():
        cls = PARAM_SCHEDULERS.get(key)
        if not (inspect.isclass(cls) and issubclass(cls, ParamScheduler)):
            continue
        homes = [name for name, names in alls.items() if key in names]
        assert len(homes) == 1, (key, homes)
        module = ours(homes[0])
        assert getattr(module, key) is cls is getattr(scheduler_pkg, key)
        assert (cls.__name__, cls.__qualname__, cls.__module__) == (key, key, module.__name__)


@pytest.mark.parametrize("name", MODULES)
def test_each_class_is_declared_by_name_on_one_line(name):
    source = Path(ours(name).__file__).read_text()
    declared = re.findall(r"^(?:class ([A-Za-z_]\w*)|([A-Z][A-Za-z]*) = )", source, re.M)
    declared = {a or b for a, b in declared}
    names = scheduler_names(ours(name).__all__, ours(name)) - {"ParamScheduler", "_ParamScheduler"}
    assert names and names <= declared


def test_package_all_is_the_three_modules_and_the_machinery():
    expected = [*ours("param_scheduler").__all__, *ours("lr_scheduler").__all__,
                *ours("momentum_scheduler").__all__]
    assert scheduler_pkg.__all__[:len(expected)] == expected
    assert len(set(scheduler_pkg.__all__)) == len(scheduler_pkg.__all__)


def sgd(lr: float = 1.0) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_lr_mixin_matches_mmengines():
    from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin as MMMixin

    class Ours(LRSchedulerMixin, StepParamScheduler):
        pass

    class Theirs(MMMixin, mm_scheduler.StepParamScheduler):
        pass

    a, b = sgd(), sgd()
    ours_s, theirs_s = Ours(a, step_size=2, gamma=0.5), Theirs(b, step_size=2, gamma=0.5)
    rows = []
    for _ in range(6):
        rows.append((a.param_groups[0]["lr"], b.param_groups[0]["lr"]))
        ours_s.step()
        theirs_s.step()
    assert all(x == pytest.approx(y) for x, y in rows) and rows[-1][0] < 1.0


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_momentum_mixin_matches_mmengines_on_adam():
    from mmengine.optim.scheduler.momentum_scheduler import MomentumSchedulerMixin as MMMixin

    class Ours(MomentumSchedulerMixin, StepParamScheduler):
        pass

    class Theirs(MMMixin, mm_scheduler.StepParamScheduler):
        pass

    def adam():
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.99))

    a, b = adam(), adam()
    ours_s, theirs_s = Ours(a, step_size=1, gamma=0.5), Theirs(b, step_size=1, gamma=0.5)
    for _ in range(3):
        ours_s.step()
        theirs_s.step()
        assert a.param_groups[0]["betas"] == pytest.approx(b.param_groups[0]["betas"])
    assert a.param_groups[0]["betas"][0] < 0.9
