"""Checkpoint files written by ``torch.save`` carry no per-record zip CRC-32 (the
manifest sums each file once); they still load, and the global option is restored."""

from __future__ import annotations

import zipfile

import pytest
import torch

from accelwrap.runner.manifest import without_zip_crc
from tests.runner.helpers import run

needs_option = pytest.mark.skipif(not hasattr(torch.serialization, "get_crc32_options"),
                                  reason="this torch has no set_crc32_options")


@needs_option
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_checkpoint_is_written_without_zip_crcs_and_the_option_is_restored(tmp_path, mode):
    assert torch.serialization.get_crc32_options() is True
    run("digits_sgd_multistep", tmp_path, "train_cfg.max_epochs=1",
        "train_dataloader.batch_size=256",
        f"+default_hooks.checkpoint.async={'true' if mode == 'async' else 'false'}")
    assert torch.serialization.get_crc32_options() is True
    optimizer = tmp_path / "checkpoints" / "epoch_1" / "optimizer.bin"
    records = zipfile.ZipFile(optimizer).infolist()
    assert records and all(record.CRC == 0 for record in records if record.file_size)
    state = torch.load(optimizer, weights_only=True)
    assert state["state"]  # momentum buffers


@needs_option
def test_the_option_is_restored_after_an_error_inside():
    torch.serialization.set_crc32_options(True)
    with pytest.raises(RuntimeError, match="inside"):
        with without_zip_crc():
            assert torch.serialization.get_crc32_options() is False
            raise RuntimeError("inside")
    assert torch.serialization.get_crc32_options() is True
