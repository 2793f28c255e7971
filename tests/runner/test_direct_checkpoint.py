"""The direct checkpoint layout (1 process / DDP): files, weights_only, resume across layouts.

The 2-process direct layout (``state.pt`` + ``rng_1.pt``, bit-identical kill-and-resume)
is covered by ``tests/distributed/test_train_resume.py``.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from accelwrap.runner import CheckpointManager, Runner, load_weights
from accelwrap.runner.models import MODELS
from tests.runner.helpers import config, records

SHORT = ["train_cfg.max_epochs=2", "default_hooks.checkpoint.max_keep_ckpts=5"]


def _runner(work_dir, *overrides, layout="auto"):
    runner = Runner.from_cfg(config("digits_sgd_multistep", work_dir, *SHORT, *overrides))
    if layout != "auto":
        runner.checkpoints = CheckpointManager(runner.accelerator, work_dir / "checkpoints",
                                               runner.checkpoint_cfg.max_keep_ckpts, layout=layout)
    return runner


@pytest.fixture(scope="module")
def direct_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("direct")
    runner = _runner(work)
    model = runner.train()
    return work, {k: v.clone() for k, v in model.state_dict().items()}


def test_one_process_checkpoint_is_one_state_file_loadable_weights_only(direct_run):
    work, final_weights = direct_run
    folder = work / "checkpoints" / "epoch_2"
    assert sorted(p.name for p in folder.iterdir()) == ["runner_state.json", "state.pt"]
    state = torch.load(folder / "state.pt", weights_only=True)
    assert sorted(state) == ["format", "models", "optimizers", "rng", "scaler", "schedulers", "step"]
    assert len(state["models"]) == 1 and len(state["optimizers"]) == 1 and len(state["schedulers"]) == 2
    assert state["scaler"] is None
    for key, value in final_weights.items():
        assert torch.equal(state["models"][0][key], value)


def test_load_from_a_direct_checkpoint_and_refusal_of_another_model(direct_run):
    work, final_weights = direct_run
    cfg = config("digits_sgd_multistep", work, *SHORT)
    model = MODELS.build(dict(cfg.model))
    load_weights(model, work / "checkpoints" / "epoch_2")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in final_weights.items())
    other = MODELS.build({**cfg.model, "hidden_dims": [16]})
    with pytest.raises(ValueError, match="different model"):
        load_weights(other, work / "checkpoints" / "epoch_2")


def test_accelerate_layout_checkpoint_resumes_bit_identically_in_the_direct_layout(direct_run, tmp_path):
    reference_work, reference_weights = direct_run
    work = tmp_path / "mixed"
    _runner(work, "train_cfg.max_epochs=1", layout="accelerate").train()
    epoch_1 = work / "checkpoints" / "epoch_1"
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= {p.name for p in epoch_1.iterdir()}
    resumed = _runner(work, "+resume=auto")
    weights = resumed.train().state_dict()
    assert all(torch.equal(weights[k], v) for k, v in reference_weights.items())
    assert (work / "checkpoints" / "epoch_2" / "state.pt").is_file()
    assert records(work, "train") == records(reference_work, "train")
    # load_from still reads the Accelerate layout.
    model = MODELS.build(dict(config("digits_sgd_multistep", work).model))
    load_weights(model, epoch_1)
    saved = load_file(str(epoch_1 / "model.safetensors"))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_accelerate_layout_refuses_a_direct_checkpoint_with_a_clear_message(direct_run, tmp_path):
    work, _ = direct_run
    runner = _runner(tmp_path, f"+resume={work / 'checkpoints' / 'epoch_1'}", layout="accelerate")
    with pytest.raises(ValueError, match=r"holds state\.pt .* load_from="):
        runner.train()


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="layout: expected one of"):
        CheckpointManager(None, tmp_path, layout="direct")
