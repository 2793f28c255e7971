"""``make_scheduler``: one family -> classes whose signature and docs come from the family."""

from __future__ import annotations

import inspect
import re

import mmengine.optim.scheduler as mm
import pytest
import torch

from accelwrap.optim.scheduler import factory
from accelwrap.optim.scheduler.factory import make_scheduler, scheduler_doc, scheduler_signature
from accelwrap.optim.scheduler.families import Family, MultiStep
from accelwrap.optim.scheduler.lr_scheduler import MultiStepLR, StepLR
from accelwrap.registry import PARAM_SCHEDULERS

NAMES = PARAM_SCHEDULERS.keys()


def mm_parameters(name: str) -> dict[str, inspect.Parameter]:
    cls = getattr(mm, name)
    init = (cls.__mro__[2] if name.endswith(("LR", "Momentum")) else cls).__init__
    return dict(inspect.signature(init).parameters)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_mmengines(name):
    theirs = mm_parameters(name)
    for param in inspect.signature(PARAM_SCHEDULERS.get(name)).parameters.values():
        assert param.default == theirs[param.name].default, (name, param.name)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_documents_every_argument_in_order_and_has_an_example(name):
    cls = PARAM_SCHEDULERS.get(name)
    args = re.search(r"\nArgs:\n(.*?)\n\n", cls.__doc__, re.S).group(1)
    documented = re.findall(r"^    (\w+): ", args, re.M)
    assert documented == list(inspect.signature(cls).parameters)
    assert f">>> sched = {name}(opt" in cls.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_family_arguments_come_from_the_family(name):
    cls = PARAM_SCHEDULERS.get(name)
    family = inspect.signature(cls.family.__init__, eval_str=True).parameters
    own = {n: p for n, p in family.items() if p.kind is p.KEYWORD_ONLY}
    signature = inspect.signature(cls).parameters
    assert own and set(own) <= set(signature)
    for arg, param in own.items():
        assert (signature[arg].default, signature[arg].annotation) == (param.default,
                                                                       param.annotation)
    assert cls.epoch_count_args == cls.family.epoch_counts


class Toy(Family):
    """Double the value.

    Args:
        times: How often.
    """

    example = "times=2"

    def __init__(self, bases: list[float], span: int, *, times: int = 1) -> None:
        super().__init__(bases, span)


def test_signature_follows_family_order_or_appends_the_common_arguments():
    assert list(scheduler_signature(Toy, takes_param_name=True).parameters) == [
        "optimizer", "param_name", "times", "begin", "end", "last_step", "by_epoch", "verbose"]
    assert list(scheduler_signature(MultiStep, takes_param_name=False).parameters) == [
        "optimizer", *MultiStep.order]


def test_badly_declared_families_are_refused():
    class Unordered(Toy):
        order = ("times", "begin")

    with pytest.raises(ValueError, match=r"Unordered.order must name each of \["):
        scheduler_signature(Unordered, takes_param_name=False)

    class Undocumented(Toy):
        """Nothing documented."""

    signature = scheduler_signature(Undocumented, takes_param_name=False)
    with pytest.raises(ValueError, match=r"Undocumented: the docstring's Args do not document "
                                         r"\['times'\]"):
        scheduler_doc(Undocumented, "UndocumentedLR", "lr", signature)


def test_param_name_binding_is_checked_before_anything_is_registered():
    with pytest.raises(ValueError, match=r"param_name must be one of \['lr', 'momentum', None\], "
                                         "got 'mom'; valid names are 'lr', 'momentum'"):
        make_scheduler(Toy, param_name="mom")
    assert "ToyLR" not in PARAM_SCHEDULERS


def test_docstring_is_the_familys_prose_for_the_variant():
    doc = scheduler_doc(Toy, "ToyMomentum", "momentum",
                        scheduler_signature(Toy, takes_param_name=False))
    assert doc.startswith("Toy schedule of the momentum: double the value.")
    assert " ".join(doc.split()).count(factory.MOMENTUM_NOTE) == 1
    assert "\n    times: How often.\n" in doc
    assert ">>> sched = ToyMomentum(opt, times=2)" in doc


def test_binding_errors_name_the_class():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match="MultiStepLR: got an unexpected keyword argument 'gama'"):
        MultiStepLR(opt, milestones=[1], gama=0.5)
    assert MultiStepLR(opt, [1], 0.5).schedule.gamma == 0.5  # positional, MMEngine's order


def test_subclass_with_its_own_init_gets_its_own_signature():
    class Halving(StepLR):
        def __init__(self, optimizer, by_epoch: bool = False) -> None:
            super().__init__(optimizer, step_size=1, gamma=0.5, by_epoch=by_epoch)

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert list(inspect.signature(Halving).parameters) == ["optimizer", "by_epoch"]
    sched = Halving(opt)
    sched.step()
    assert opt.param_groups[0]["lr"] == 0.5 and list(inspect.signature(StepLR).parameters)[1] == \
        "step_size"
