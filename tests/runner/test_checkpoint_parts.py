"""The one declaration of a checkpoint's parts: disk, save, load and README agree with it.

The expected file names are written out here from Accelerate 1.15's
``save_accelerator_state`` (``accelerate/checkpointing.py``), not taken from accelwrap:
``model.safetensors`` then ``model_{i}.safetensors`` per prepared model (safetensors is
``save_state``'s default), ``optimizer.bin``/``optimizer_{i}.bin``,
``scheduler.bin``/``scheduler_{i}.bin``, ``scaler.pt`` when the accelerator has a
``GradScaler``, and ``random_states_{process_index}.pkl`` on every rank.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate import Accelerator
from omegaconf import OmegaConf

from accelwrap.errors import CheckpointError
from accelwrap.runner import Runner, checkpoint_parts
from accelwrap.runner.checkpoint_layout import Files, Layout
from accelwrap.runner.checkpoint_parts import (
    PARTS,
    STATE_FILE,
    CheckpointPart,
    declared_files,
    parts_table,
)
from accelwrap.runner.manifest import MANIFEST_KEY, read_sealed, sealed_text
from tests.runner.helpers import config, run

README = Path(__file__).resolve().parents[2] / "README.md"
SHORT = ("train_cfg.max_epochs=1", "train_dataloader.batch_size=256")
GAN_SHORT = ("train_cfg.max_epochs=1", "param_scheduler.generator.1.begin=0",
             "train_dataloader.dataset.num_samples=256")


def accelerate_writes(models: int, optimizers: int, schedulers: int, scaler: bool,
                      ranks: int) -> set[str]:
    """What ``accelerator.save_state`` writes for a plain (non-FSDP) run."""
    def numbered(first: str, count: int) -> set[str]:
        stem, ext = first.split(".", 1)
        return {first if i == 0 else f"{stem}_{i}.{ext}" for i in range(count)}

    return (numbered("model.safetensors", models) | numbered("optimizer.bin", optimizers)
            | numbered("scheduler.bin", schedulers) | ({"scaler.pt"} if scaler else set())
            | {f"random_states_{rank}.pkl" for rank in range(ranks)})


def latest(work_dir: Path) -> Path:
    checkpoints = work_dir / "checkpoints"
    return checkpoints / (checkpoints / "latest").read_text().strip()


def readme_parts_section() -> str:
    section = README.read_text().split("### 3. Resuming long runs", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"<!-- checkpoint-parts:[^\n]*-->\n(.*?)<!-- /checkpoint-parts -->",
                      section, flags=re.S)
    assert found, "README's checkpoint section has no checkpoint-parts table"
    return found.group(1)


def test_readme_checkpoint_table_is_the_declaration():
    assert readme_parts_section() == parts_table()
    rows = [line for line in readme_parts_section().splitlines()[2:]]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == [part.name for part in PARTS]


def test_parts_and_names_are_declared_once():
    names = [part.name for part in PARTS]
    assert len(names) == len(set(names))
    keys = [key for part in PARTS for key in part.keys]
    assert len(keys) == len(set(keys))
    big = Layout(models=3, optimizers=3, schedulers=3, scaler=True, world_size=3)
    files = [name for part in PARTS if not part.keys for f in part.files for name in f.names(big)]
    assert len(files) == len(set(files))


@pytest.mark.parametrize("name, overrides, counts", [
    ("digits_sgd_multistep", SHORT, dict(models=1, optimizers=1, schedulers=2, scaler=False)),
    ("digits_sgd_multistep", (*SHORT, "optim_wrapper.type=AmpOptimWrapper",
                              "+optim_wrapper.dtype=float16"),
     dict(models=1, optimizers=1, schedulers=2, scaler=True)),
    ("gan_ring2d", GAN_SHORT, dict(models=2, optimizers=2, schedulers=3, scaler=False)),
], ids=["plain", "fp16-scaler", "gan-two-optimizers"])
def test_a_checkpoint_holds_exactly_the_declared_files(tmp_path, name, overrides, counts):
    runner = run(name, tmp_path, *overrides)
    on_disk = {p.name for p in latest(tmp_path).iterdir()}
    expected = accelerate_writes(**counts, ranks=1) | {STATE_FILE}
    assert on_disk == expected
    assert set(declared_files(runner.checkpoints.layout)) == expected
    state = json.loads((latest(tmp_path) / STATE_FILE).read_text())
    assert set(state) == {key for part in PARTS for key in part.keys}


def test_layout_names_fsdp_and_multi_rank_files():
    sharded = Layout(models=1, optimizers=1, schedulers=1, world_size=2, engine="fsdp_sharded")
    assert declared_files(sharded) == ["pytorch_model_fsdp_0", "optimizer_0", "scheduler.bin",
                                       "random_states_0.pkl", "random_states_1.pkl", STATE_FILE]
    plugin = SimpleNamespace(state_dict_type=SimpleNamespace(name="SHARDED_STATE_DICT"))
    acc = SimpleNamespace(scaler=None, num_processes=2, distributed_type="FSDP",
                          state=SimpleNamespace(fsdp_plugin=plugin))
    assert Layout.of(acc, 1, 1, 1) == sharded
    with pytest.raises(ValueError, match="Layout.engine: expected one of"):
        Layout(engine="deepspeed")


@pytest.fixture
def trained(tmp_path):
    run("digits_sgd_multistep", tmp_path / "run", *SHORT)
    return tmp_path / "run"


def _resume(work_dir: Path, checkpoint: Path) -> Runner:
    cfg = config("digits_sgd_multistep", work_dir, "train_cfg.max_epochs=2",
                 "train_dataloader.batch_size=256")
    return Runner.from_cfg(OmegaConf.merge(cfg, {"resume": str(checkpoint)}))


@pytest.mark.parametrize("removed, part", [("scheduler_1.bin", "schedulers"),
                                           ("random_states_0.pkl", "RNG states")])
@pytest.mark.parametrize("written", [False, True])
def test_resume_names_a_missing_declared_file_and_its_part(trained, removed, part, written):
    """A declared file its save never wrote (not in the manifest: another set-up), or one
    lost since (in the manifest): either way the file, its part and the checkpoint."""
    checkpoint = latest(trained)
    (checkpoint / removed).unlink()
    if not written:
        state = read_sealed(checkpoint / STATE_FILE)
        del state[MANIFEST_KEY][removed]
        (checkpoint / STATE_FILE).write_text(sealed_text(state))
    runner = _resume(trained, checkpoint)
    with pytest.raises(CheckpointError) as err:
        runner.train()
    expected = (f"{removed} (part '{part}') is missing" if written else
                f"it lacks {removed} (part '{part}', written by Accelerate's save_state)")
    assert expected in str(err.value)
    assert str(checkpoint) in str(err.value)


def test_a_save_missing_a_declared_file_is_never_published(trained, monkeypatch):
    before = latest(trained)
    runner = _resume(trained, before)
    monkeypatch.setattr(runner.checkpoints, "layout",
                        Layout(models=1, optimizers=1, schedulers=2, scaler=True))
    with pytest.raises(CheckpointError, match=r"wrote no scaler.pt \(part 'loss scaler'"):
        runner.checkpoints.save("iter_99", {"iter": 99})
    assert latest(trained) == before and not (trained / "checkpoints" / "iter_99").exists()


def test_a_users_own_load_state_reads_a_runner_checkpoint(trained):
    checkpoint = latest(trained)
    runner = _resume(trained, checkpoint)  # built (prepared), not trained
    assert isinstance(runner.accelerator, Accelerator)
    runner.accelerator.load_state(str(checkpoint))


def test_a_part_with_its_own_file_is_one_more_entry(tmp_path, monkeypatch):
    """How EMA will be added: one entry with its files and save/load hooks."""
    loaded = []

    def save(loop, folder):
        (folder / "ema.json").write_text(json.dumps({"iter": loop.iter}))

    def load(loop, folder):
        loaded.append(json.loads((folder / "ema.json").read_text()))

    ema = CheckpointPart("EMA", checkpoint_parts.ACCELWRAP, "averaged weights",
                         files=(Files("ema.json", lambda layout: 1),), save=save, load=load)
    monkeypatch.setattr(checkpoint_parts, "PARTS", (*PARTS, ema))
    run("digits_sgd_multistep", tmp_path, *SHORT)
    checkpoint = latest(tmp_path)
    assert "ema.json" in {p.name for p in checkpoint.iterdir()}
    assert "| EMA | `ema.json` | accelwrap | averaged weights |" in checkpoint_parts.parts_table()
    saved_iter = json.loads((checkpoint / STATE_FILE).read_text())["iter"]
    _resume(tmp_path, checkpoint).train()
    assert loaded == [{"iter": saved_iter}]


def test_runner_state_lacking_a_key_names_it(trained):
    checkpoint = latest(trained)
    state = json.loads((checkpoint / STATE_FILE).read_text())
    del state["batch_in_epoch"]
    # Sealed again: an edit the seal did not cover would be refused as damage first.
    (checkpoint / STATE_FILE).write_text(sealed_text(state))
    match = r"has no key 'batch_in_epoch' \(part 'data position'"
    with pytest.raises(CheckpointError, match=match):
        _resume(trained, checkpoint).train()
