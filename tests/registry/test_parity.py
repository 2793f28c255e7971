"""A project's registry.py written for MMEngine ports by renaming the import.

The same project (a child registry with ``scope`` and ``locations``) and the same
program run once on ``mmengine`` and once on ``accelwrap``, each in a fresh
interpreter; every lookup and build must resolve to the same thing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PROJECT = {
    "registry.py": """
        from {base}.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
        from {base}.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
        from {base}.registry import Registry

        OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS,
                              locations=['myproj.optim'], scope='myproj')
        PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
                                    locations=['myproj.optim'], scope='myproj')
        """,
    "optim.py": """
        import torch
        from myproj.registry import OPTIMIZERS

        @OPTIMIZERS.register_module()
        class MyOpt(torch.optim.SGD):
            pass

        @OPTIMIZERS.register_module(name='SGD')
        class ProjectSGD(torch.optim.SGD):
            pass
        """,
}

PROGRAM = """
import json, sys
import torch
import {base}.optim
from {base}.registry import DefaultScope, OPTIMIZERS as ROOT
from myproj.registry import OPTIMIZERS, PARAM_SCHEDULERS

def name(registry, key):
    try:
        found = registry.get(key)
    except KeyError:
        return None
    return None if found is None else found.__name__

params = [torch.nn.Parameter(torch.zeros(2))]
out = {{}}
out['lazy'] = 'myproj.optim' not in sys.modules
out['child'] = ROOT.children.get('myproj') is OPTIMIZERS and OPTIMIZERS.parent is ROOT
out['scope'] = OPTIMIZERS.scope
out['build_func'] = PARAM_SCHEDULERS.build_func is PARAM_SCHEDULERS.parent.build_func
for key in ['MyOpt', 'SGD', 'Adam', 'myproj.MyOpt', 'myproj.SGD', 'Nope', 'torch.optim.Adam',
            'mmengine.SGD', 'myproj.Adam']:
    out['child.' + key] = name(OPTIMIZERS, key)
for key in ['MyOpt', 'SGD', 'myproj.MyOpt', 'myproj.SGD', 'Optimizer']:
    out['root.' + key] = name(ROOT, key)
out['imported'] = 'myproj.optim' in sys.modules
cfg = dict(type='SGD', lr=0.1)
out['build.root'] = type(ROOT.build(cfg, default_args=dict(params=params))).__name__
out['build.child'] = type(OPTIMIZERS.build(cfg, default_args=dict(params=params))).__name__
out['build._scope_'] = type(ROOT.build(dict(cfg, _scope_='myproj'),
                                       default_args=dict(params=params))).__name__
with DefaultScope.overwrite_default_scope('myproj'):
    out['build.default_scope'] = type(ROOT.build(cfg, default_args=dict(params=params))).__name__
    out['build.default_scope.MyOpt'] = type(ROOT.build(
        dict(type='MyOpt', lr=0.1), default_args=dict(params=params))).__name__
opt = torch.optim.SGD(params, lr=0.1)
sched = PARAM_SCHEDULERS.build(dict(type='MultiStepLR', milestones=[1], by_epoch=True,
                                    convert_to_iter_based=True),
                               default_args=dict(optimizer=opt, epoch_length=3))
lrs = []
for _ in range(4):
    opt.step()
    sched.step()
    lrs.append(round(opt.param_groups[0]['lr'], 8))
out['sched'] = [type(sched).__name__, sched.by_epoch, lrs]
print(json.dumps(out))
"""


def run(tmp_path: Path, base: str) -> dict:
    root = tmp_path / base
    (root / "myproj").mkdir(parents=True)
    (root / "myproj" / "__init__.py").write_text("")
    for file, text in PROJECT.items():
        (root / "myproj" / file).write_text(textwrap.dedent(text).format(base=base))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(base=base)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_same_project_resolves_the_same_on_mmengine_and_accelwrap(tmp_path):
    pytest.importorskip("mmengine.registry")
    ours, theirs = run(tmp_path, "accelwrap"), run(tmp_path, "mmengine")
    assert ours == theirs
    assert ours["child.MyOpt"] == "MyOpt" and ours["child.SGD"] == "ProjectSGD"
    assert ours["root.MyOpt"] is None and ours["root.myproj.MyOpt"] == "MyOpt"
    assert ours["build.default_scope"] == "ProjectSGD" and ours["lazy"] and ours["imported"]
