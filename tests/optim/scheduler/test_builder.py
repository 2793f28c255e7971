"""``build_param_schedulers``, exports, declared signatures and the docstring examples."""

from __future__ import annotations

import copy
import doctest
import inspect

import pytest
import torch
from omegaconf import OmegaConf

import accelwrap.optim
import accelwrap.optim.scheduler as scheduler_pkg
from accelwrap.optim import OptimWrapper, OptimWrapperDict
from accelwrap.optim.scheduler import (
    base,
    build_param_schedulers,
    builder,
    factory,
    families,
    lr_scheduler,
    momentum_scheduler,
    onecycle,
    param_scheduler,
    plateau,
)
from accelwrap.registry import PARAM_SCHEDULERS


def wrapper(lr: float = 0.1) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9))


def test_every_registered_class_is_exported_with_mmengine_names():
    import mmengine.optim.scheduler as mm

    assert sorted(PARAM_SCHEDULERS.keys()) == sorted(n for n in mm.__all__
                                                     if n != "_ParamScheduler")
    for name in PARAM_SCHEDULERS.keys():
        cls = PARAM_SCHEDULERS.get(name)
        assert getattr(accelwrap.optim, name) is cls is getattr(scheduler_pkg, name)
        assert issubclass(cls, torch.optim.lr_scheduler.LRScheduler)
        declaring = {"LR": lr_scheduler, "Momentum": momentum_scheduler}
        home = next((m for suffix, m in declaring.items() if name.endswith(suffix)),
                    param_scheduler)
        assert cls.__module__ == home.__name__ and cls.__doc__


def test_signatures_follow_mmengine():
    import mmengine.optim.scheduler as mm

    for name in PARAM_SCHEDULERS.keys():
        ours = inspect.signature(PARAM_SCHEDULERS.get(name))
        theirs = inspect.signature(getattr(mm, name).__init__)
        mm_names = [p for p in theirs.parameters if p not in ("self", "args", "kwargs")]
        if name.endswith(("LR", "Momentum")):  # MMEngine's mixins hide the arguments
            base_cls = getattr(mm, name).__mro__[2]
            mm_names = [p for p in inspect.signature(base_cls.__init__).parameters
                        if p not in ("self", "param_name")]
        assert list(ours.parameters) == mm_names, name


def test_optim_wrapper_dict_gets_a_dict_of_lists():
    members = OptimWrapperDict(gen=wrapper(0.1), disc=wrapper(0.2))
    shared = build_param_schedulers(dict(type="StepLR", step_size=2), members, max_epochs=5)
    assert sorted(shared) == ["disc", "gen"] and all(len(v) == 1 for v in shared.values())
    assert shared["gen"][0].optimizer is members["gen"] and shared["gen"][0].end == 5
    per = build_param_schedulers({"gen": [dict(type="StepLR", step_size=2),
                                          dict(type="LinearLR", by_epoch=False)]}, members,
                                 max_iters=40)
    assert [type(s).__name__ for s in per["gen"]] == ["StepLR", "LinearLR"]
    assert per["gen"][1].end == 40 and per["disc"] == []
    with pytest.raises(ValueError, match=r"\['gens'\] are not members of the OptimWrapperDict "
                                         r"\(\['disc', 'gen'\]\); did you mean 'gen'"):
        build_param_schedulers({"gens": []}, members)


def test_configs_are_never_mutated_and_objects_pass_through():
    target = wrapper()
    cfg = [dict(type="MultiStepLR", milestones=[1, 2], convert_to_iter_based=True)]
    frozen = copy.deepcopy(cfg)
    built = build_param_schedulers(cfg, target, epoch_length=4, max_epochs=3)
    assert cfg == frozen and built[0].end == 12 and list(built[0].milestones) == [4, 8]
    omega = OmegaConf.create(cfg)
    build_param_schedulers(omega, target, epoch_length=4)
    assert OmegaConf.to_container(omega) == frozen
    assert build_param_schedulers(built, target) == built
    with pytest.raises(TypeError, match=r"param_scheduler\[0\]: expected a scheduler or a config "
                                        "dict, got str"):
        build_param_schedulers(["StepLR"], target)


def test_momentum_maps_to_betas_for_adam():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.1, betas=(0.9, 0.99))
    sched = accelwrap.optim.LinearMomentum(opt, start_factor=0.5, end=3, by_epoch=False)
    assert opt.param_groups[0]["betas"] == (0.45, 0.99) and sched.use_betas
    sched.step()
    sched.step()
    assert opt.param_groups[0]["betas"] == (0.9, 0.99)


@pytest.mark.parametrize("module", [scheduler_pkg, base, builder, factory, families, onecycle,
                                    plateau, param_scheduler, lr_scheduler, momentum_scheduler,
                                    *(PARAM_SCHEDULERS.get(n) for n in
                                      PARAM_SCHEDULERS.keys())],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    finder = doctest.DocTestFinder(recurse=not isinstance(module, type))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, module.__name__, globs={}):
        runner.run(test)
    assert runner.failures == 0


@pytest.mark.parametrize("by_epoch, source", [(True, "train_cfg.max_epochs"),
                                              (False, "train_cfg.max_iters")])
def test_an_end_taken_from_the_run_length_is_named_when_it_is_refused(by_epoch, source):
    cfg = [{"type": "MultiStepLR", "milestones": [2], "begin": 12, "by_epoch": by_epoch}]
    with pytest.raises(ValueError, match=rf"end=10 is {source}, the default end") as raised:
        build_param_schedulers(cfg, wrapper(), 1, max_epochs=10, max_iters=10)
    assert "begin=12, end=10" in str(raised.value)


def test_an_end_given_in_the_config_gets_no_note():
    cfg = [{"type": "MultiStepLR", "milestones": [2], "begin": 12, "end": 10}]
    with pytest.raises(ValueError) as raised:
        build_param_schedulers(cfg, wrapper(), 1, max_epochs=10)
    assert "begin=12, end=10" in str(raised.value) and "default end" not in str(raised.value)
