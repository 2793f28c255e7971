"""FSDP through the command users run: ``accelerate launch --config_file launch_configs/fsdp.yaml``.

On this CPU-only machine the command must train FSDP2 over gloo (sharded checkpoints:
``pytorch_model_fsdp_0/`` and ``optimizer_0/``, no ``model.safetensors``) or stop with an
error; it must never fall back to DDP. A SIGKILL and ``--resume auto`` end bit-identical to
an uninterrupted run, and the 2-process shards resume in 1 process (DCP reshards them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.distributed.launch import REPO, _run
from tests.distributed.train_cli import ENGINE_ARGS as ARGS
from tests.distributed.train_cli import TRAIN, tree

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

FSDP = REPO / "launch_configs" / "fsdp.yaml"


def launch(work: Path, nproc: int, args: list[str] = (), env: dict | None = None,
           launcher: list[str] = (), check: bool = True):
    """``accelerate launch --config_file launch_configs/fsdp.yaml --num_processes N train.py``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP),
           "--num_processes", str(nproc), *launcher, str(TRAIN), "--work-dir", str(work),
           *ARGS, *args]
    return _run(cmd, work.parent / f"results_{work.name}", env, 300, check)


def checkpoint(work: Path, name: str | None = None) -> Path:
    folder = work / "checkpoints"
    return folder / (name or (folder / "latest").read_text().strip())


def files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, less ``runner_state.json`` and DCP's ``.metadata`` (it holds a
    random save id); the ``.distcp`` shards hold the tensors."""
    out = tree(folder)
    out.pop("runner_state.json")
    for name in ("pytorch_model_fsdp_0/.metadata", "optimizer_0/.metadata"):
        assert out.pop(name)
    return out


def test_fsdp_command_shards_resumes_exactly_and_reshards_to_one_process(tmp_path):
    reference = tmp_path / "reference"
    ran = launch(reference, 2)
    # val_step runs on the sharded model (registered as an FSDP forward method)
    assert "Epoch(val) [2]" in ran.stdout + ran.stderr
    final = checkpoint(reference)
    assert final.name == "iter_24"
    shards = sorted(p.name for p in (final / "pytorch_model_fsdp_0").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert (final / "optimizer_0").is_dir() and not (final / "model.safetensors").exists()

    work = tmp_path / "work"
    killed = launch(work, 2, env={"ACCELWRAP_TEST_KILL": "iter:6"}, check=False)
    assert killed.returncode != 0
    assert checkpoint(work).name == "iter_4"
    launch(work, 2, ["--resume", "auto"])
    assert checkpoint(work).name == "iter_24"
    assert files(checkpoint(work)) == files(final)

    # The 2-process shards of iteration 8 resume in one process: the rest of epoch 0
    # (1,438 - 8 x 128 samples = 7 batches of 64) and epoch 1 (23 batches).
    single = tmp_path / "single"
    proc = launch(single, 1, ["--resume", str(checkpoint(work, "iter_8"))])
    assert "resumed from" in proc.stdout + proc.stderr
    last = checkpoint(single)
    state = json.loads((last / "runner_state.json").read_text())
    assert (state["world_size"], state["iter"]) == (1, 8 + 7 + 23)
    assert sorted(p.name for p in (last / "pytorch_model_fsdp_0").iterdir()) == [
        ".metadata", "__0_0.distcp"]


def test_fsdp1_on_cpu_stops_with_a_reason(tmp_path):
    work = tmp_path / "fsdp1"
    proc = launch(work, 2, launcher=["--fsdp_version", "1"], check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "fsdp_version 1 (FSDP1) needs GPUs" in out and "fsdp_version: 2" in out
    assert not (work / "checkpoints").exists()
