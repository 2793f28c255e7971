"""``load_from`` a checkpoint checks the weights file against the checkpoint's manifest."""

from __future__ import annotations

import pytest

from accelwrap.errors import DamagedCheckpointError
from tests.runner.helpers import run

SHORT = ("train_dataloader.batch_size=256",)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    work = tmp_path_factory.mktemp("load_from") / "run"
    run("digits_sgd_multistep", work, "train_cfg.max_epochs=2", *SHORT)
    return work / "checkpoints"


@pytest.mark.parametrize("target", ["folder", "file"])
def test_damaged_weights_are_refused_naming_the_file_and_an_intact_checkpoint(
        saved, tmp_path, target):
    weights = saved / "epoch_2" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    try:
        source = saved / "epoch_2" if target == "folder" else weights
        with pytest.raises(DamagedCheckpointError) as err:
            run("digits_sgd_multistep", tmp_path / "new", "train_cfg.max_epochs=1",
                f"+load_from={source}", *SHORT)
        assert err.value.file.startswith("model.safetensors")  # with its part, for a folder
        assert "was changed after the save" in err.value.reason
        assert str(saved / "epoch_1") in str(err.value)  # the intact one beside it
    finally:
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))


def test_intact_weights_load(saved, tmp_path):
    runner = run("digits_sgd_multistep", tmp_path / "new", "train_cfg.max_epochs=1",
                 f"+load_from={saved / 'epoch_2'}", *SHORT)
    assert runner.load_from == str(saved / "epoch_2")
