"""``custom_imports`` in a real 2-process launch: every process imports the user's module.

The user's model lives in a module of their own (written into the test's folder), named
only by the config's ``custom_imports``; each rank writes a marker file when the module is
imported, and the run must train with the user's model on both ranks.
"""

from __future__ import annotations

import os

import pytest

from tests.distributed.launch import REPO
from tests.distributed.train_cli import train

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

USER_MODULE = '''
import os
from pathlib import Path

from torch import nn

from accelwrap.registry import MODELS

Path(os.environ["MARKER_DIR"], f"imported_by_rank{os.environ.get('RANK', '0')}").touch()


@MODELS.register_module()
class UserDigitsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, inputs, labels):
        return nn.functional.cross_entropy(self.net(inputs), labels)
'''


def test_every_process_imports_the_users_module(tmp_path):
    package = tmp_path / "user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "my_models.py").write_text(USER_MODULE)
    markers = tmp_path / "markers"
    markers.mkdir()
    args = ["--config", "configs/digits_sgd_multistep.yaml", "train_cfg.max_epochs=1",
            "default_hooks.logger.progress_bar=false", "default_hooks.logger.trackers=null",
            "model={type: UserDigitsNet}", "val_dataloader=null",
            "+custom_imports={imports: [user_pkg.my_models], allow_failed_imports: false}"]
    env = {"MARKER_DIR": str(markers), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    train(tmp_path / "work", args, nproc=2, env=env)
    assert sorted(p.name for p in markers.iterdir()) == ["imported_by_rank0", "imported_by_rank1"]
    assert (tmp_path / "work" / "checkpoints" / "latest").is_file()
