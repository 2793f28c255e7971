"""MultiStepLR milestones in any order and repeated (MMEngine's Counter), and ``begin < 0``.

Expected values are MMEngine's ``MultiStepLR`` stepped side by side.
"""

from __future__ import annotations

import pytest
import torch

import accelwrap.optim  # noqa: F401 - fills the registry
from accelwrap.optim.scheduler import LinearLR, MultiStepLR
from accelwrap.registry import PARAM_SCHEDULERS
from tests.optim.scheduler.simulate import stepped_lrs

STEPS = 9


def lrs(make, steps: int = STEPS) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return stepped_lrs(opt, make(opt), steps)


@pytest.mark.parametrize("milestones", [[5, 2], [3, 3], [2, 5, 5, 1], [4, 0, 4, 4], [7, 7, 2]])
@pytest.mark.parametrize("begin", [0, 2])
def test_unsorted_and_repeated_milestones_match_mmengine(milestones, begin):
    from mmengine.optim.scheduler import MultiStepLR as MMMultiStepLR

    kwargs = dict(milestones=milestones, gamma=0.5, by_epoch=False, begin=begin)
    ours = lrs(lambda opt: MultiStepLR(opt, **kwargs))
    assert ours == pytest.approx(lrs(lambda opt: MMMultiStepLR(opt, **kwargs)), rel=1e-12)


def _build(registry, milestones, epoch_length, opt):
    return registry.build(dict(type="MultiStepLR", milestones=milestones, gamma=0.5,
                               convert_to_iter_based=True),
                          default_args=dict(optimizer=opt, epoch_length=epoch_length))


def test_converted_milestones_that_meet_match_mmengine():
    import mmengine.optim  # noqa: F401 - fills MMEngine's registry
    from mmengine.registry import PARAM_SCHEDULERS as MM

    ours = lrs(lambda opt: _build(PARAM_SCHEDULERS, [1, 1, 2], 3, opt))
    assert ours == pytest.approx(lrs(lambda opt: _build(MM, [1, 1, 2], 3, opt)), rel=1e-12)


def test_epochs_rounded_to_one_iteration_decay_twice_there():
    # [1.4, 1.6] epochs x 2 iterations: both round half up to iteration 3 (MMEngine keeps
    # 2.8 and 3.2, which never fire: the documented rounding difference), i.e. the
    # schedule of MMEngine's milestones=[3, 3] in iterations
    from mmengine.optim.scheduler import MultiStepLR as MMMultiStepLR

    ours = lrs(lambda opt: _build(PARAM_SCHEDULERS, [1.4, 1.6], 2, opt))
    expected = lrs(lambda opt: MMMultiStepLR(opt, milestones=[3, 3], gamma=0.5, by_epoch=False))
    assert ours == pytest.approx(expected, rel=1e-12)


def test_negative_begin_is_refused_with_the_reason():
    # MMEngine accepts begin=-1 and still starts at step 0; only the window gets longer, so
    # its LinearLR never reaches end_factor (checked here on MMEngine itself)
    from mmengine.optim.scheduler import LinearLR as MMLinearLR

    kwargs = dict(start_factor=0.5, end=4, by_epoch=False)
    stretched = lrs(lambda opt: MMLinearLR(opt, begin=-1, **kwargs))
    assert stretched[0] == pytest.approx(0.5) and stretched[-1] < 1.0
    assert lrs(lambda opt: MMLinearLR(opt, begin=0, **kwargs))[-1] == pytest.approx(1.0)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match=r"LinearLR: begin must be >= 0, got -1; .*use begin=0"):
        LinearLR(opt, begin=-1, **kwargs)
