"""Durability of checkpoint writes: the files Accelerate wrote are fsync'ed, concurrently,
before the rename that publishes them; the pointer moves only afterwards; the state file
(which holds the manifest that catches a file lost to a power loss), the folders and the
pointer are synced in one round after the renames, before ``save`` returns.

``os.fsync``/``os.rename``/``os.replace`` are wrapped by a recorder that still calls the
real function, so the tests see what reaches the kernel and in which order.
"""

from __future__ import annotations

import os
import threading

import pytest

from accelwrap.runner import durable
from accelwrap.runner.durable import fsync_all, tree_paths
from tests.runner.helpers import run


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


def test_checkpoint_is_durable_before_it_is_published(tmp_path, monkeypatch):
    recorder = Recorder(monkeypatch)
    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1")
    checkpoints = tmp_path / "checkpoints"
    final = checkpoints / "epoch_1"
    published = recorder.index("rename", final)
    pointer_moved = recorder.index("replace", checkpoints / "latest")
    assert published < pointer_moved
    # Renames keep inodes: every file Accelerate wrote was synced before the folder got
    # its final name (the state file, whose manifest would catch their loss, after).
    state = final / "runner_state.json"
    written = {p.stat().st_ino for p in tree_paths(final) if p.is_file() and p != state}
    assert {"model.safetensors", "optimizer.bin"} <= {p.name for p in final.iterdir()}
    assert written <= set(recorder.fsynced_before(published))
    # Then one round: the state file, the folder, the pointer's content and the
    # checkpoints folder (both renames), all after the pointer moved.
    after = [inode for kind, inode in recorder.events[pointer_moved:] if kind == "fsync"]
    for path in (state, final, checkpoints / "latest", checkpoints):
        assert path.stat().st_ino in after, path
    assert (checkpoints / "latest").read_text() == "epoch_1\n"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["epoch_1", "latest"]


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
