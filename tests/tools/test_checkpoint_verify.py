"""``accelwrap test --checkpoint`` and ``accelwrap merge-shards`` check a checkpoint first.

A damaged file (truncated, one byte flipped, deleted) must stop either command before
anything is built or written: exit status 1, one ``error`` line naming the file and the
checkpoint and, where there is one, the newest intact checkpoint beside it. Folders that
cannot be checked (no manifest: saved before checkpoints were verified; no
``runner_state.json``: a user's own ``accelerator.save_state`` folder) still work, with a
note. The sharded checkpoint for ``merge-shards`` is written here with
``torch.distributed.checkpoint`` in one process (the layout Accelerate's FSDP2 save
writes, ``pytorch_model_fsdp_0/*.distcp``), sealed with the manifest helpers a save uses.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from accelwrap.cli import main
from accelwrap.runner.manifest import MANIFEST_KEY, SEAL_KEY, build_manifest, sealed_text
from tests.runner.helpers import QUIET, REPO, run

pytestmark = pytest.mark.filterwarnings(
    "ignore:torch.distributed is disabled:UserWarning")  # DCP in one process, on purpose

CONFIG = str(REPO / "configs" / "digits_sgd_multistep.yaml")
TEST_SET = "+test_dataloader={dataset: {type: DigitsDataset, split: val}, batch_size: 128}"


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "deleted":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    else:  # one bit of one byte, in the middle
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:])


REASONS = {"deleted": "is missing", "truncated": "is truncated", "flipped": "was changed"}


def _unseal(folder: Path, drop: str | None = MANIFEST_KEY) -> None:
    """Rewrite ``runner_state.json`` as an older accelwrap did (no manifest, no seal)."""
    state = json.loads((folder / "runner_state.json").read_text())
    state.pop(SEAL_KEY)
    state.pop(drop, None)
    (folder / "runner_state.json").write_text(json.dumps(state))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("trained")
    run("digits_sgd_multistep", work, "train_cfg.max_epochs=2", "train_dataloader.batch_size=256",
        "default_hooks.checkpoint.max_keep_ckpts=3")
    return work / "checkpoints"


@pytest.fixture
def checkpoints(trained, tmp_path) -> Path:
    copy = tmp_path / "checkpoints"
    shutil.copytree(trained, copy)
    return copy


def _test(checkpoint: Path, work: Path, caplog, capsys) -> tuple[int, str, list[str]]:
    with caplog.at_level(logging.INFO, logger="accelwrap"):
        status = main(["test", CONFIG, "--checkpoint", str(checkpoint), "--work-dir", str(work),
                       *QUIET, TEST_SET])
    return status, capsys.readouterr().err, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("how", list(REASONS))
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin", "random_states_0.pkl"])
def test_test_refuses_a_damaged_file_naming_it_and_the_intact_one(checkpoints, tmp_path,
                                                                  caplog, capsys, name, how):
    damage(checkpoints / "epoch_2" / name, how)
    work = tmp_path / "test_work"
    status, err, logs = _test(checkpoints / "epoch_2", work, caplog, capsys)
    assert status == 1
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert f"error: checkpoint {str(checkpoints / 'epoch_2')!r} is damaged: {name}" in lines[0]
    assert REASONS[how] in lines[0]
    assert f"the newest intact checkpoint beside it is {checkpoints / 'epoch_1'}" in lines[0]
    assert not any(line.startswith("Epoch(test)") for line in logs)
    assert not work.exists()  # nothing written


def test_test_damaged_state_file_and_no_intact_neighbour(checkpoints, tmp_path, caplog, capsys):
    damage(checkpoints / "epoch_2" / "runner_state.json", "flipped")
    damage(checkpoints / "epoch_1" / "model.safetensors", "truncated")
    status, err, _ = _test(checkpoints / "epoch_2", tmp_path / "w", caplog, capsys)
    assert status == 1
    assert f"checkpoint {str(checkpoints / 'epoch_2')!r} is damaged: runner_state.json" in err
    assert "no intact checkpoint beside it" in err
    assert not (tmp_path / "w").exists()


def test_test_a_weights_file_of_a_checkpoint_is_checked_too(checkpoints, tmp_path, caplog,
                                                            capsys):
    damage(checkpoints / "epoch_2" / "model.safetensors", "flipped")
    status, err, _ = _test(checkpoints / "epoch_2" / "model.safetensors", tmp_path / "w",
                           caplog, capsys)
    assert status == 1
    assert f"{str(checkpoints / 'epoch_2')!r} is damaged: model.safetensors was changed" in err


@pytest.mark.parametrize("folder", ["intact", "no manifest", "own save_state folder"])
def test_test_runs_on_folders_it_can_or_cannot_check(checkpoints, tmp_path, caplog, capsys,
                                                     folder):
    target = checkpoints / "epoch_2"
    if folder == "no manifest":
        _unseal(target)
    elif folder == "own save_state folder":
        (target / "runner_state.json").unlink()
    status, err, logs = _test(target, tmp_path / "w", caplog, capsys)
    assert status == 0, err
    assert sum(line.startswith("Epoch(test) [3/3]  accuracy: ") for line in logs) == 1
    notes = [line for line in logs if "its files are not checked" in line]
    expected = {"intact": [],
                "no manifest": [f"checkpoint {target} has no manifest (saved before "
                                "accelwrap verified checkpoints): its files are not checked"],
                "own save_state folder": [f"{target} holds no runner_state.json (not a "
                                          "checkpoint accelwrap saved): its files are not "
                                          "checked"]}
    assert notes == expected[folder]


def test_the_command_exits_non_zero_without_a_traceback(checkpoints, tmp_path):
    damage(checkpoints / "epoch_2" / "model.safetensors", "truncated")
    proc = subprocess.run([sys.executable, "-m", "accelwrap.cli", "test", CONFIG, "--checkpoint",
                           str(checkpoints / "epoch_2"), "--work-dir", str(tmp_path / "w"),
                           *QUIET, TEST_SET], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "is damaged: model.safetensors" in proc.stderr and "is truncated" in proc.stderr


# ---------------------------------------------------------------- merge-shards
def _sharded(folder: Path, model: torch.nn.Module, seal: bool = True) -> Path:
    import torch.distributed.checkpoint as dcp

    dcp.save({"model": model.state_dict()}, checkpoint_id=str(folder / "pytorch_model_fsdp_0"))
    if seal:
        manifest = build_manifest(folder, skip=("runner_state.json",))
        (folder / "runner_state.json").write_text(sealed_text({"iter": 4,
                                                               MANIFEST_KEY: manifest}))
    return folder


@pytest.fixture
def shards(tmp_path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    _sharded(tmp_path / "checkpoints" / "iter_2", model)
    return _sharded(tmp_path / "checkpoints" / "iter_4", model), model


def _merge(checkpoint: Path, out: Path, capsys) -> tuple[int, str]:
    status = main(["merge-shards", str(checkpoint), str(out)])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("how", list(REASONS))
def test_merge_shards_refuses_a_damaged_shard_and_writes_nothing(shards, tmp_path, capsys, how):
    checkpoint, _ = shards
    shard = next((checkpoint / "pytorch_model_fsdp_0").glob("*.distcp"))
    damage(shard, how)
    out = tmp_path / "merged"
    status, err = _merge(checkpoint, out, capsys)
    assert status == 1
    name = shard.relative_to(checkpoint).as_posix()
    assert f"accelwrap merge-shards: checkpoint {str(checkpoint)!r} is damaged: {name}" in err
    assert REASONS[how] in err
    assert f"the newest intact checkpoint beside it is {checkpoint.parent / 'iter_2'}" in err
    assert not out.exists()


@pytest.mark.parametrize("sealed", [True, False], ids=["verified", "no manifest"])
def test_merge_shards_merges_intact_and_unverifiable_checkpoints(shards, tmp_path, capsys,
                                                                 sealed):
    checkpoint, model = shards
    if not sealed:
        _unseal(checkpoint)
    status, err = _merge(checkpoint, tmp_path / "merged", capsys)
    assert status == 0, err
    assert ("has no manifest" in err) is not sealed
    merged = load_file(tmp_path / "merged" / "model.safetensors")
    expected = model.state_dict()
    assert sorted(merged) == sorted(expected)
    assert all(torch.equal(merged[key], expected[key]) for key in expected)
