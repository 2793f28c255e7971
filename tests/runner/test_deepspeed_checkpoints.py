"""DeepSpeed checkpoint folders outside a DeepSpeed resume, without DeepSpeed installed.

``load_from`` reads a ZeRO 0-2 engine's module weights from Accelerate's layout
(``pytorch_model/mp_rank_00_model_states.pt``) with ``weights_only=True``; a ZeRO-3 folder
(partitions only) is refused with the way out. A checkpoint of an engine that partitions
its state per process is refused on another world size before anything loads (a real
DeepSpeed run of both: ``tests/distributed/test_deepspeed_command.py``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from accelwrap.errors import CheckpointError
from accelwrap.runner.checkpoint_layout import Layout
from accelwrap.runner.checkpoint_load import refuse_mismatch
from accelwrap.runner.weights import DEEPSPEED_MODEL, load_weights


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _deepspeed_folder(folder: Path, module: dict) -> Path:
    """A checkpoint folder laid out as Accelerate's save_state writes a DeepSpeed engine."""
    (folder / "pytorch_model").mkdir(parents=True)
    torch.save({"module": module, "ds_version": "0.19.8", "dp_world_size": 2,
                "global_steps": 8}, folder / DEEPSPEED_MODEL)
    return folder


def test_load_from_a_deepspeed_folder_loads_the_engine_module_weights(tmp_path):
    trained = _model()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    folder = _deepspeed_folder(tmp_path / "iter_8", trained.state_dict())
    fresh = _model()
    load_weights(fresh, folder)
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name


def test_bf16_module_weights_load_cast_with_a_warning(tmp_path, caplog):
    trained = _model()
    folder = _deepspeed_folder(tmp_path / "bf16", {k: v.to(torch.bfloat16)
                                                   for k, v in trained.state_dict().items()})
    fresh = _model()
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        load_weights(fresh, folder)
    assert "torch.bfloat16" in caplog.text and "zero_to_fp32.py" in caplog.text
    weight = fresh[0].weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, trained[0].weight.to(torch.bfloat16).float())


def test_a_zero3_folder_is_refused_with_the_way_out(tmp_path):
    partitioned = {k: torch.empty(0) for k in _model().state_dict()}
    folder = _deepspeed_folder(tmp_path / "zero3", partitioned)
    with pytest.raises(ValueError, match="ZeRO-3 checkpoint keeps only partitions.*zero_to_fp32"):
        load_weights(_model(), folder)


def test_a_deepspeed_folder_of_another_model_is_refused_naming_the_difference(tmp_path):
    folder = _deepspeed_folder(tmp_path / "other", nn.Linear(4, 2).state_dict())
    with pytest.raises(ValueError, match="different model: missing in the checkpoint: 0.weight"):
        load_weights(_model(), folder)


@pytest.mark.parametrize("saved, now", [(2, 1), (1, 2)])
def test_a_per_process_partitioned_checkpoint_is_refused_on_another_world_size(saved, now):
    layout = Layout(models=1, optimizers=1, schedulers=0, world_size=now, engine="other")
    with pytest.raises(CheckpointError) as err:
        refuse_mismatch("/ckpt/iter_8", {"iter": 8, "world_size": saved}, layout, None)
    message = str(err.value)
    assert f"on {now} process(es): it was saved by {saved} process(es)" in message
    assert f"--num_processes {saved}" in message and "load_from='/ckpt/iter_8'" in message


def test_plain_and_resharding_engines_are_not_refused_for_the_world_size(tmp_path):
    for name in ("random_states_0.pkl", "runner_state.json"):  # the declared files
        (tmp_path / name).write_text("{}")
    for engine in ("plain", "fsdp_sharded"):
        layout = Layout(models=0, optimizers=0, schedulers=0, world_size=1, engine=engine)
        refuse_mismatch(tmp_path, {"iter": 8, "world_size": 2}, layout, None)  # no raise


@pytest.mark.parametrize("engine_files, hint", [
    (("pytorch_model_fsdp_0/__0_0.distcp",), "It holds FSDP sharded state"),
    ((DEEPSPEED_MODEL,), "It is a DeepSpeed checkpoint"),
], ids=["fsdp", "deepspeed"])
def test_another_engines_checkpoint_resumed_plainly_says_what_it_needs(tmp_path, engine_files,
                                                                       hint):
    for name in ("random_states_0.pkl", "runner_state.json", *engine_files):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}")
    layout = Layout(models=1, optimizers=1, schedulers=0, world_size=1, engine="plain")
    with pytest.raises(CheckpointError) as err:
        refuse_mismatch(tmp_path, {"iter": 8, "world_size": 1}, layout, None)
    assert "lacks model.safetensors" in str(err.value) and hint in str(err.value)
