"""Damaged checkpoints: every declared file missing, truncated, flipped, replaced, or a
folder in its place.

A run of two epochs leaves ``epoch_1`` and ``epoch_2``; ``epoch_2`` is damaged in one
way per case. An explicit resume from it must stop with an error naming the file and
the checkpoint before anything loads; ``resume='auto'`` must skip it, say why, and take
``epoch_1``. The files are the ones Accelerate 1.15's ``save_state`` writes for this
config (one model, one optimizer, two schedulers, one process) plus the runner's state,
written out here rather than taken from accelwrap's declaration.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from accelwrap.errors import CheckpointError, DamagedCheckpointError
from accelwrap.runner import Runner
from accelwrap.runner.checkpoint import resolve_resume
from accelwrap.runner.checkpoint_find import verify_checkpoint
from tests.runner.helpers import config, copy_of, resumed, run

FILES = ["model.safetensors", "optimizer.bin", "scheduler.bin", "scheduler_1.bin",
         "random_states_0.pkl", "runner_state.json"]
DAMAGES = ["missing", "truncated", "flipped", "garbage", "folder"]
SHORT = ("train_dataloader.batch_size=256", "default_hooks.checkpoint.max_keep_ckpts=3")


def damage(path: Path, how: str) -> None:
    """Damage one file the way a failing disk, a copy tool or a person would."""
    data = path.read_bytes()
    if how in ("missing", "folder"):
        path.unlink()
        if how == "folder":  # a folder of that name in its place
            path.mkdir()
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "flipped":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:])
    else:  # garbage of the same size: only the checksum can tell
        path.write_bytes(bytes((i * 37 + 11) % 251 for i in range(len(data))))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("damage") / "run"
    run("digits_sgd_multistep", work, "train_cfg.max_epochs=2", *SHORT)
    assert {p.name for p in (work / "checkpoints").iterdir()} == {"epoch_1", "epoch_2",
                                                                 "latest"}
    assert {p.name for p in (work / "checkpoints" / "epoch_2").iterdir()} == set(FILES)
    return work


@pytest.fixture
def work(saved, tmp_path) -> Path:
    return copy_of(saved, tmp_path)


def _runner(work: Path, resume: str) -> Runner:
    return resumed("digits_sgd_multistep", work, resume, "train_cfg.max_epochs=3", *SHORT)


def _named(err: BaseException, checkpoint: Path, name: str) -> bool:
    text = str(err)
    return str(checkpoint) in text and name in text and "\n" not in text


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", FILES)
def test_explicit_resume_from_a_damaged_checkpoint_names_the_file(work, name, how):
    checkpoint = work / "checkpoints" / "epoch_2"
    damage(checkpoint / name, how)
    with pytest.raises((CheckpointError, FileNotFoundError)) as err:
        _runner(work, str(checkpoint)).train()
    assert _named(err.value, checkpoint, name), str(err.value)


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", FILES)
def test_resume_auto_skips_a_damaged_checkpoint_and_says_why(work, name, how, caplog):
    checkpoints = work / "checkpoints"
    damage(checkpoints / "epoch_2" / name, how)
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        chosen = resolve_resume("auto", checkpoints)
    assert chosen == checkpoints / "epoch_1"
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert any(str(checkpoints / "epoch_2") in line and name in line for line in skipped), \
        skipped


def test_the_runner_falls_back_and_trains_on_from_the_intact_checkpoint(work, caplog):
    damage(work / "checkpoints" / "epoch_2" / "random_states_0.pkl", "truncated")
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        runner = _runner(work, "auto")
    assert runner.resume_from == work / "checkpoints" / "epoch_1"
    runner.train()
    state = json.loads((work / "checkpoints" / "epoch_3" / "runner_state.json").read_text())
    assert state["epoch"] == 3
    assert any("newest intact checkpoint" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage", b"../../etc\n", b"", b"iter_9\n"],
                         ids=["not-utf8", "a-path", "empty", "no-such-checkpoint"])
def test_a_garbage_latest_pointer_falls_back_to_the_newest_by_iteration(work, content, caplog):
    checkpoints = work / "checkpoints"
    (checkpoints / "latest").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        assert resolve_resume("auto", checkpoints) == checkpoints / "epoch_2"
    assert any(str(checkpoints / "latest") in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("text", ['{"iter": 12, ', "[1, 2]", '{"iter": "twelve"}'],
                         ids=["cut-json", "not-an-object", "iter-not-a-number"])
def test_bad_json_in_runner_state_is_named(work, text):
    checkpoint = work / "checkpoints" / "epoch_2"
    (checkpoint / "runner_state.json").write_text(text)
    assert resolve_resume("auto", work / "checkpoints") == work / "checkpoints" / "epoch_1"
    with pytest.raises(CheckpointError) as err:
        _runner(work, str(checkpoint)).train()
    assert _named(err.value, checkpoint, "runner_state.json"), str(err.value)


def test_with_nothing_intact_resume_auto_refuses_to_start_over(work):
    for name in ("epoch_1", "epoch_2"):
        damage(work / "checkpoints" / name / "optimizer.bin", "flipped")
    with pytest.raises(CheckpointError) as err:
        _runner(work, "auto")
    message = str(err.value)
    assert "no intact checkpoint in" in message and "--overwrite" in message
    for name in ("epoch_1", "epoch_2"):
        assert f"{work / 'checkpoints' / name}: optimizer.bin (part 'optimizers') was changed" \
            in message


def test_an_edit_that_keeps_the_json_valid_is_caught_by_the_seal(work):
    checkpoint = work / "checkpoints" / "epoch_2"
    path = checkpoint / "runner_state.json"
    text = path.read_text()
    assert '"iter": 12,' in text  # 2 epochs of 6 iterations
    path.write_text(text.replace('"iter": 12,', '"iter": 13,'))
    with pytest.raises(DamagedCheckpointError, match="was changed after it was written"):
        _runner(work, str(checkpoint))
    assert resolve_resume("auto", work / "checkpoints") == work / "checkpoints" / "epoch_1"


def _within(seconds: float, work: Callable[[], object], fifo: Path) -> object:
    """``work()``'s result or error; fails the test when it is still blocked after
    ``seconds`` (then a writer opens ``fifo`` to release the blocked open)."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = work()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome["result"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail(f"blocked on the FIFO {fifo}")
    return outcome["result"]


@pytest.mark.parametrize("name", ["optimizer.bin", "runner_state.json"])
def test_a_fifo_in_place_of_a_file_is_an_error_not_a_hang(work, name):
    checkpoints = work / "checkpoints"
    fifo = checkpoints / "epoch_2" / name
    fifo.unlink()
    os.mkfifo(fifo)
    err = _within(30, lambda: verify_checkpoint(checkpoints / "epoch_2"), fifo)
    assert isinstance(err, (DamagedCheckpointError, FileNotFoundError)), err
    assert _named(err, checkpoints / "epoch_2", name), err
    assert _within(30, lambda: resolve_resume("auto", checkpoints), fifo) \
        == checkpoints / "epoch_1"


def test_pruning_leaves_a_damaged_old_checkpoint_alone_and_goes_on(work, caplog):
    (work / "checkpoints" / "epoch_1" / "runner_state.json").write_text("{not json")
    cfg = config("digits_sgd_multistep", work, "train_cfg.max_epochs=4",
                 "train_dataloader.batch_size=256", "default_hooks.checkpoint.max_keep_ckpts=2")
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        Runner.from_cfg(OmegaConf.merge(cfg, {"resume": "auto"})).train()
    names = {p.name for p in (work / "checkpoints").iterdir()}
    assert names == {"epoch_1", "epoch_3", "epoch_4", "latest"}
    reports = [r.getMessage() for r in caplog.records if "left in place" in r.getMessage()]
    assert len(reports) == 1 and "epoch_1" in reports[0] and "not valid JSON" in reports[0]


def test_a_checkpoint_without_manifest_still_loads_with_a_warning(work, caplog):
    path = work / "checkpoints" / "epoch_2" / "runner_state.json"
    state = json.loads(path.read_text())
    del state["manifest"], state["state_crc32"]
    path.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, logger="accelwrap"):
        _runner(work, "auto").train()
    assert any("has no manifest" in r.getMessage() for r in caplog.records)


def test_the_error_type_carries_the_file(work):
    checkpoint = work / "checkpoints" / "epoch_2"
    damage(checkpoint / "optimizer.bin", "flipped")
    with pytest.raises(DamagedCheckpointError) as err:
        _runner(work, str(checkpoint)).train()
    assert err.value.checkpoint == str(checkpoint)
    assert err.value.file == "optimizer.bin (part 'optimizers')"
    assert "was changed after the save" in err.value.reason


def test_what_loads_with_weights_only_as_the_readme_says(saved):
    """README: the .bin/.pt files load with a plain weights_only=True; the RNG pickle only
    with NumPy's array globals allowed (what Accelerate's load_state does)."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    checkpoint = saved / "checkpoints" / "epoch_2"
    for name in ("optimizer.bin", "scheduler.bin", "scheduler_1.bin"):
        torch.load(checkpoint / name, weights_only=True)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(checkpoint / "random_states_0.pkl", weights_only=True)
    with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS):
        states = torch.load(checkpoint / "random_states_0.pkl", weights_only=True)
    assert set(states) >= {"random_state", "numpy_random_seed", "torch_manual_seed"}


def _count_reads(monkeypatch, folder: Path) -> dict[str, int]:
    """Count the content reads (``manifest.file_checksum``) of the files in ``folder``."""
    from accelwrap.runner import manifest  # its file_checksum: every content read of a load

    reads: dict[str, int] = {}
    real = manifest.file_checksum

    def counted(path):
        if Path(path).parent == folder:
            reads[Path(path).name] = reads.get(Path(path).name, 0) + 1
        return real(path)

    monkeypatch.setattr(manifest, "file_checksum", counted)
    return reads


@pytest.mark.parametrize("resume", ["auto", "explicit"])
def test_a_resume_reads_each_file_of_its_checkpoint_once(work, monkeypatch, resume):
    """``auto`` picks the checkpoint by verifying every file and does not read them again
    to load it; an explicit path has them read while it loads."""
    folder = work / "checkpoints" / "epoch_2"
    reads = _count_reads(monkeypatch, folder)
    _runner(work, "auto" if resume == "auto" else str(folder)).train()
    assert set(reads) == set(FILES) - {"runner_state.json"}, reads
    assert set(reads.values()) == {1}, reads
