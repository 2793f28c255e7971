"""``prepare`` and ``make_accelerator`` in one process (the 2-process run is in
tests/distributed)."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from accelwrap.optim import OptimWrapper, OptimWrapperDict, make_accelerator, prepare
from tests.optim.optimizer.wrapper_cases import make_model, make_optimizer


def objects():
    model = make_model()
    wrapper = OptimWrapper(make_optimizer("sgd", model))
    scheduler = torch.optim.lr_scheduler.StepLR(wrapper.optimizer, step_size=1, gamma=0.5)
    loader = DataLoader(TensorDataset(torch.randn(8, 4)), batch_size=4)
    return model, wrapper, loader, scheduler


def test_prepare_returns_everything_in_order_and_binds_wrappers():
    accelerator = make_accelerator(cpu=True)
    model, wrapper, loader, scheduler = objects()
    raw = wrapper.optimizer
    out = prepare(accelerator, loader, wrapper, scheduler, model)
    assert out[1] is wrapper and out[2] is scheduler
    assert wrapper.accelerator is accelerator
    assert type(wrapper.optimizer).__name__ == "AcceleratedOptimizer"
    assert wrapper.optimizer.optimizer is raw and wrapper._raw is raw
    assert len(out[0]) == len(loader)
    assert [s.scheduler for s in accelerator._schedulers] == [scheduler]  # saved by save_state
    scheduler.step()
    assert wrapper.get_lr() == {"lr": [0.05]}  # one step per call, not num_processes


def test_prepare_single_object_and_dict_members():
    accelerator = make_accelerator(cpu=True)
    wrappers = OptimWrapperDict(a=OptimWrapper(make_optimizer("sgd", make_model(0))),
                                b=OptimWrapper(make_optimizer("sgd", make_model(1)),
                                               accumulative_counts=2))
    assert prepare(accelerator, wrappers) is wrappers
    assert all(w.accelerator is accelerator for w in wrappers.values())


def test_prepare_refuses_multi_stepping_schedulers():
    accelerator = Accelerator(cpu=True)  # step_scheduler_with_optimizer defaults to True
    model, wrapper, loader, scheduler = objects()
    with pytest.raises(ValueError, match=r"step_scheduler_with_optimizer=True.*num_processes times"
                                         r".*step_scheduler_with_optimizer=False\).*make_accelerator"):
        prepare(accelerator, model, wrapper, scheduler)
    prepare(accelerator, model, wrapper)  # without schedulers it is harmless


def test_prepare_refuses_accelerate_accumulation():
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model, wrapper, _, _ = objects()
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=2"):
        prepare(accelerator, model, wrapper)


def test_make_accelerator_defaults_and_errors():
    with pytest.raises(ValueError, match=r"gradient_accumulation_steps=3 is not supported.*"
                                         r"accumulative_counts=3"):
        make_accelerator(cpu=True, gradient_accumulation_steps=3)
    accelerator = make_accelerator(cpu=True)
    assert not accelerator.step_scheduler_with_optimizer
    assert accelerator.gradient_accumulation_steps == 1 and accelerator.mixed_precision == "no"


def test_binding_decides_the_fast_path_once():
    accelerator = make_accelerator(cpu=True)
    model, wrapper, _, _ = objects()
    prepare(accelerator, model, wrapper)
    assert wrapper._direct and wrapper._scaler is None and wrapper._no_sync is None
    plain = OptimWrapper(make_optimizer("sgd", model))
    assert plain._direct and plain.accelerator is None
