"""Durability of checkpoint writes: the fsyncs of the files Accelerate wrote start before
the rename that publishes them and run while it happens; ``latest`` is rewritten after
the rename; the state file (which holds the manifest that catches a file lost to a power
loss), the folders and the pointer are synced alongside, after the renames; every one
has finished before ``save`` returns. A sync that fails takes the new folder back out.

``os.fsync``/``os.rename``/``os.replace`` are wrapped by a recorder that still calls the
real function, so the tests see what reaches the kernel and in which order.
"""

from __future__ import annotations

import os
import threading

import pytest

from accelwrap.runner import durable
from accelwrap.runner.durable import fsync_all, tree_paths
from tests.runner.helpers import resumed, run


class Recorder:
    """Log of (event, detail) for fsync (by inode) and renames, in call order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, barrier: threading.Barrier | None = None):
        self.events: list[tuple[str, object]] = []
        self.lock = threading.Lock()
        real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

        def fsync(fd):
            if barrier is not None:
                barrier.wait()  # breaks (timeout) unless another fsync is in flight at once
            real_fsync(fd)
            with self.lock:
                self.events.append(("fsync", os.fstat(fd).st_ino))

        def rename(src, dst, *args, **kwargs):
            real_rename(src, dst, *args, **kwargs)
            self.events.append(("rename", (os.fspath(src), os.fspath(dst))))

        def replace(src, dst, *args, **kwargs):
            real_replace(src, dst, *args, **kwargs)
            self.events.append(("replace", (os.fspath(src), os.fspath(dst))))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        monkeypatch.setattr(os, "replace", replace)

    def fsynced(self) -> list[int]:
        return self.fsynced_before(len(self.events))

    def fsynced_before(self, end: int) -> list[int]:
        return [inode for kind, inode in self.events[:end] if kind == "fsync"]

    def index(self, kind: str, dst: os.PathLike) -> int:
        return next(i for i, (k, d) in enumerate(self.events)
                    if k == kind and d[1] == os.fspath(dst))


def _tree(root):
    (root / "sub" / "deeper").mkdir(parents=True)
    for i, rel in enumerate(["a.bin", "b.bin", "sub/c.bin", "sub/deeper/d.bin"]):
        (root / rel).write_bytes(bytes([i]) * (1000 + i))
    return root


def test_tree_paths_lists_every_file_and_folder(tmp_path):
    root = _tree(tmp_path / "ckpt")
    names = sorted(str(p.relative_to(tmp_path)) for p in tree_paths(root))
    assert names == ["ckpt", "ckpt/a.bin", "ckpt/b.bin", "ckpt/sub", "ckpt/sub/c.bin",
                     "ckpt/sub/deeper", "ckpt/sub/deeper/d.bin"]


def test_fsync_all_syncs_each_path_once_and_concurrently(tmp_path, monkeypatch):
    paths = tree_paths(_tree(tmp_path / "ckpt"))
    # Every fsync waits until len(paths) of them are in flight at the same time: done
    # one after another, the first would wait alone and the barrier would break.
    recorder = Recorder(monkeypatch, threading.Barrier(len(paths), timeout=30))
    assert len(paths) <= durable.MAX_WORKERS
    fsync_all(paths)
    assert sorted(recorder.fsynced()) == sorted(p.stat().st_ino for p in paths)


def test_fsync_all_reports_a_failure_after_syncing_the_rest(tmp_path, monkeypatch):
    good = tree_paths(_tree(tmp_path / "ckpt"))
    recorder = Recorder(monkeypatch)
    with pytest.raises(FileNotFoundError):
        fsync_all([*good[:3], tmp_path / "missing.bin", *good[3:]])
    assert sorted(recorder.fsynced()) == sorted(p.stat().st_ino for p in good)


def _record_returns(monkeypatch, recorder):
    """Log ("saved", folder) when ``CheckpointManager.save`` returns."""
    from accelwrap.runner.checkpoint import CheckpointManager

    real_save = CheckpointManager.save

    def save(self, *args, **kwargs):
        folder = real_save(self, *args, **kwargs)
        recorder.events.append(("saved", (None, os.fspath(folder))))
        return folder

    monkeypatch.setattr(CheckpointManager, "save", save)


def test_checkpoint_is_durable_before_save_returns(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    _record_returns(monkeypatch, recorder)
    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1")
    checkpoints = tmp_path / "checkpoints"
    final = checkpoints / "epoch_1"
    published = recorder.index("rename", final)
    returned = recorder.index("saved", final)
    assert published < returned
    assert not [detail for kind, detail in recorder.events  # latest is rewritten in place
                if kind == "replace" and str(checkpoints) in detail[1]]
    # Renames keep inodes: every file and folder of the checkpoint, the pointer and the
    # checkpoints folder were synced before save returned.
    inside = {p.stat().st_ino for p in tree_paths(final)}
    assert {"model.safetensors", "optimizer.bin"} <= {p.name for p in final.iterdir()}
    assert inside <= set(recorder.fsynced_before(returned))
    # The state file, the folder, the pointer and the checkpoints folder (the rename)
    # were synced after the rename.
    after = recorder.fsynced_before(returned)[len(recorder.fsynced_before(published)):]
    for path in (final / "runner_state.json", final, checkpoints / "latest", checkpoints):
        assert path.stat().st_ino in after, path
    assert (checkpoints / "latest").read_text() == "epoch_1\n"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_1", "latest"]


@pytest.mark.parametrize("replacing", [False, True])
def test_publish_syncs_every_file_and_folder_of_a_nested_checkpoint_once(tmp_path, monkeypatch,
                                                                        replacing):
    """Sub-folders (FSDP shards), small and large files, the state file, the pointer and
    the checkpoints folder: each synced exactly once, also when a folder of the same
    name is replaced."""
    from accelwrap.runner.file_io import SMALL_FILE
    from accelwrap.runner.publish import publish, seal

    checkpoints = tmp_path / "checkpoints"
    tmp = _tree(checkpoints / ".tmp-iter_4")
    (tmp / "sub" / "large.bin").write_bytes(b"x" * SMALL_FILE)  # summed and synced at once
    final = checkpoints / "iter_4"
    if replacing:
        _tree(final)
    recorder = Recorder(monkeypatch)
    publish(tmp, final, checkpoints / "latest", False, *seal(tmp, final, {"iter": 4}))
    published = [*tree_paths(final), checkpoints / "latest", checkpoints]
    assert sorted(recorder.fsynced()) == sorted(path.stat().st_ino for path in published)
    assert (final / "sub" / "deeper" / "d.bin").read_bytes() == bytes([3]) * 1003


def test_a_failed_sync_takes_the_new_checkpoint_back_out(tmp_path, monkeypatch):
    """The disk reports an error while the new folder's files are synced: the folder is
    withdrawn, one clear error names the previous checkpoint, which stays the newest."""
    from accelwrap.errors import CheckpointWriteError
    from accelwrap.runner.checkpoint import find_latest, resolve_resume

    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1",
        "train_dataloader.batch_size=256")
    checkpoints = tmp_path / "checkpoints"
    real_fsync = os.fsync

    def failing_fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "optimizer.bin":
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(CheckpointWriteError) as raised:
        resumed("digits_sgd_multistep", tmp_path, "auto", "train_cfg.max_epochs=2",
                "train_dataloader.batch_size=256").train()
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert "epoch_1" in str(raised.value) and "Input/output error" in str(raised.value)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_1"]
    assert find_latest(checkpoints) == checkpoints / "epoch_1"
    assert resolve_resume("auto", checkpoints) == checkpoints / "epoch_1"


def test_a_checkpoint_whose_state_file_never_reached_the_disk_is_skipped(tmp_path):
    """What a power loss inside the last fsync round can leave: the new folder renamed
    into place and ``latest`` naming it, its state file empty. Resuming takes the
    previous checkpoint."""
    from accelwrap.runner.checkpoint import resolve_resume

    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=2",
        "train_dataloader.batch_size=256")
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "epoch_2" / "runner_state.json").write_bytes(b"")
    assert (checkpoints / "latest").read_text() == "epoch_2\n"
    assert resolve_resume("auto", checkpoints) == checkpoints / "epoch_1"
