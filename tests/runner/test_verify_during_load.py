"""Checkpoint files of 1 MiB and more are summed while Accelerate reads them.

What is checked before anything loads (the state file's seal, every file's presence and
size, the content of the small files) and what is checked during the load (the content
of the large files), and that a change in a large file is still an error naming it:
for a same-size change the error comes after ``load_state``, before the run trains on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from accelwrap.errors import DamagedCheckpointError
from accelwrap.runner import Runner
from accelwrap.runner.checkpoint import resolve_resume
from accelwrap.runner.file_io import SMALL_FILE
from accelwrap.runner.manifest import build_manifest, start_verify, verify_files
from tests.runner.helpers import copy_of, resumed, run

# 64-960-960-10: model.safetensors and optimizer.bin (SGD momentum) are ~4 MB each.
BIG = ("model.hidden_dims=[960,960]", "train_dataloader.batch_size=256")


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _folder(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "small.bin").write_bytes(bytes(range(256)) * 4)
    (folder / "large.bin").write_bytes(bytes(i % 253 for i in range(SMALL_FILE + 4096)))
    return folder, build_manifest(folder)


def test_a_changed_small_file_is_found_before_anything_starts(tmp_path):
    folder, manifest = _folder(tmp_path)
    _flip(folder / "small.bin")
    now, later = start_verify(folder, manifest)
    assert now == [("small.bin", now[0][1])] and "was changed after the save" in now[0][1]
    assert later() == []  # nothing was started


def test_a_truncated_large_file_is_found_before_anything_starts(tmp_path):
    folder, manifest = _folder(tmp_path)
    data = (folder / "large.bin").read_bytes()
    (folder / "large.bin").write_bytes(data[:-1])
    now, _ = start_verify(folder, manifest)
    assert now == [("large.bin", f"is truncated: {len(data) - 1:,} of {len(data):,} bytes")]


def test_a_same_size_change_in_a_large_file_is_found_by_the_started_check(tmp_path):
    folder, manifest = _folder(tmp_path)
    _flip(folder / "large.bin")
    now, later = start_verify(folder, manifest)
    assert now == []
    found = later()
    assert [name for name, _ in found] == ["large.bin"]
    assert "was changed after the save" in found[0][1]
    assert verify_files(folder, manifest) == found  # the full check agrees


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("big") / "run"
    run("digits_sgd_multistep", work, "train_cfg.max_epochs=2", *BIG)
    return work


@pytest.fixture
def work(saved, tmp_path) -> Path:
    return copy_of(saved, tmp_path)


def _resume(work: Path, resume: str) -> Runner:
    return resumed("digits_sgd_multistep", work, resume, "train_cfg.max_epochs=3", *BIG)


@pytest.mark.parametrize("name, where", [("model.safetensors", "tensor data"),
                                         ("optimizer.bin", "tensor data"),
                                         ("optimizer.bin", "zip header")])
def test_a_flipped_byte_in_a_large_file_stops_the_resume_naming_it(work, name, where):
    checkpoint = work / "checkpoints" / "epoch_2"
    path = checkpoint / name
    assert path.stat().st_size >= SMALL_FILE
    _flip(path, at=None if where == "tensor data" else 40)
    with pytest.raises(DamagedCheckpointError) as err:
        _resume(work, str(checkpoint)).train()
    assert err.value.file.startswith(name) and err.value.checkpoint == str(checkpoint)
    assert "was changed after the save" in err.value.reason
    assert not (work / "checkpoints" / "epoch_3").exists()  # it never trained on


def test_resume_auto_checks_large_files_fully_before_loading(work):
    _flip(work / "checkpoints" / "epoch_2" / "optimizer.bin")
    assert resolve_resume("auto", work / "checkpoints") == work / "checkpoints" / "epoch_1"
    runner = _resume(work, "auto")
    runner.train()
    assert (work / "checkpoints" / "epoch_3").is_dir()
