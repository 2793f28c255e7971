"""Checkpoint folder logic: completeness, the latest pointer, keep-last-N, resume paths."""

from __future__ import annotations

import json

import pytest

from accelwrap.runner.checkpoint import CheckpointManager, find_latest, is_complete, resolve_resume
from accelwrap.runner.weights import fingerprint_problems


def _fake(directory, name, iteration, complete=True):
    path = directory / name
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"x")
    if complete:
        (path / "runner_state.json").write_text(json.dumps({"iter": iteration}))
    return path


def test_partial_and_temporary_folders_are_never_complete(tmp_path):
    assert is_complete(_fake(tmp_path, "iter_2", 2))
    assert not is_complete(_fake(tmp_path, "iter_4", 4, complete=False))
    assert not is_complete(_fake(tmp_path, ".tmp-iter_6", 6))
    assert find_latest(tmp_path) == tmp_path / "iter_2"


def test_latest_pointer_wins_and_a_stale_pointer_falls_back(tmp_path):
    _fake(tmp_path, "iter_10", 10)
    _fake(tmp_path, "epoch_1", 5)
    (tmp_path / "latest").write_text("epoch_1\n")
    assert find_latest(tmp_path) == tmp_path / "epoch_1"
    (tmp_path / "latest").write_text("iter_99\n")  # killed between rename and pointer
    assert find_latest(tmp_path) == tmp_path / "iter_10"


def test_the_pointer_is_rewritten_in_place_and_never_names_a_longer_old_name(tmp_path):
    from accelwrap.runner.checkpoint_find import read_pointer
    from accelwrap.runner.publish import write_pointer

    _fake(tmp_path, "iter_100", 100)
    _fake(tmp_path, "epoch_1", 5)
    pointer = write_pointer(tmp_path, "iter_100")
    inode = pointer.stat().st_ino
    write_pointer(tmp_path, "epoch_1")  # shorter: the old tail is blanked, not left
    assert read_pointer(tmp_path) == ("epoch_1", None)
    assert pointer.read_bytes() == b"epoch_1\n "
    assert pointer.stat().st_ino == inode  # the same file, not a replacement
    assert find_latest(tmp_path) == tmp_path / "epoch_1"


def test_prune_keeps_the_newest_n(tmp_path):
    for i in (3, 6, 9, 12):
        _fake(tmp_path, f"iter_{i}", i)
    (tmp_path / "latest").write_text("iter_12\n")
    manager = CheckpointManager(accelerator=None, directory=tmp_path, max_keep=2)
    manager.prune()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_12", "iter_9", "latest"]


def test_resume_settings(tmp_path):
    assert resolve_resume(False, tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None  # nothing yet: start fresh
    _fake(tmp_path, "iter_3", 3)
    assert resolve_resume("auto", tmp_path) == tmp_path / "iter_3"
    assert resolve_resume(True, tmp_path) == tmp_path / "iter_3"
    assert resolve_resume(str(tmp_path / "iter_3"), tmp_path) == tmp_path / "iter_3"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_resume(str(tmp_path / "nope"), tmp_path)
    _fake(tmp_path, "broken", 1, complete=False)
    with pytest.raises(FileNotFoundError, match="contains no runner_state.json"):
        resolve_resume(str(tmp_path / "broken"), tmp_path)


def test_fingerprint_problems_name_each_kind():
    problems = fingerprint_problems({"a": [2], "b": [3]}, {"a": [4], "c": [1]})
    assert problems == ["missing in the checkpoint: c", "not in the model: b",
                        "shape mismatch: a: checkpoint [2] vs model [4]"]
