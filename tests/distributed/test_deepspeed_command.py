"""DeepSpeed through the command users run: ``accelerate launch --config_file
launch_configs/deepspeed_cpu.yaml scripts/train.py`` (ZeRO-2 on the CPU, 2 gloo ranks).

The run trains with every scheduler of the config registered for checkpointing (Accelerate's
DeepSpeed ``prepare`` keeps only the last one of a call), takes its micro-batch size from
the prepared dataloader, and a SIGKILL then ``--resume auto`` ends with the same files,
byte for byte, as an uninterrupted run. On 1 process the 2-process checkpoint is refused
with both world sizes named (ZeRO partitions the optimizer state per process), and
``load_from`` reads its weights: the same as DeepSpeed's own fp32 consolidation.
Skipped, with the import error, where ``deepspeed`` does not import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from accelwrap.registry import MODELS
from accelwrap.runner.weights import load_weights
from tests.distributed.launch import REPO, _run
from tests.distributed.test_deepspeed import needs_deepspeed
from tests.distributed.train_cli import ENGINE_ARGS as ARGS
from tests.distributed.train_cli import TRAIN, tree

pytestmark = [pytest.mark.slow, pytest.mark.distributed, needs_deepspeed]

CONFIG = REPO / "launch_configs" / "deepspeed_cpu.yaml"
ENV = {"DS_ACCELERATOR": "cpu", "ACCELERATE_USE_CPU": "0"}


def launch(work: Path, nproc: int, args: list[str] = (), env: dict | None = None,
           check: bool = True):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIG),
           "--num_processes", str(nproc), str(TRAIN), "--work-dir", str(work), *ARGS, *args]
    return _run(cmd, work.parent / f"results_{work.name}", {**ENV, **(env or {})}, 300, check)


def latest(work: Path) -> Path:
    folder = work / "checkpoints"
    return folder / (folder / "latest").read_text().strip()


def test_deepspeed_command_trains_resumes_exactly_and_refuses_another_world_size(
        tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    ran = launch(reference, 2)
    assert "Epoch(val) [2]" in ran.stdout + ran.stderr
    final = latest(reference)
    assert final.name == "iter_24"
    names = set(tree(final))
    assert {"scheduler.bin", "scheduler_1.bin", "random_states_0.pkl", "random_states_1.pkl",
            "pytorch_model/mp_rank_00_model_states.pt",
            "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= names

    work = tmp_path / "work"
    killed = launch(work, 2, env={"ACCELWRAP_TEST_KILL": "iter:6"}, check=False)
    assert killed.returncode != 0 and latest(work).name == "iter_4"
    launch(work, 2, ["--resume", "auto"])
    assert latest(work).name == "iter_24"
    resumed, uninterrupted = tree(latest(work)), tree(final)
    for files in (resumed, uninterrupted):
        files.pop("runner_state.json")  # its run id and times differ
    assert resumed == uninterrupted

    single = tmp_path / "single"
    refused = launch(single, 1, ["--resume", str(latest(work).with_name("iter_8"))],
                     check=False)
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "on 1 process(es): it was saved by 2 process(es)" in out, out[-3000:]
    assert "Traceback" not in out.split("on 1 process(es)")[0][-2000:]
    assert not (single / "checkpoints").exists()

    # load_from: the engine's weights, as DeepSpeed's own consolidation reads them
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    model = MODELS.build(dict(type="MLPClassifier", in_features=64, hidden_dims=[128, 64],
                              num_classes=10, norm=True, dropout=0.1))  # the config's
    load_weights(model, final)
    consolidated = get_fp32_state_dict_from_zero_checkpoint(str(final))
    loaded = model.state_dict()
    assert set(consolidated) <= set(loaded)
    for name, value in consolidated.items():
        assert torch.equal(loaded[name], value), name
