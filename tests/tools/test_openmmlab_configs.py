"""Real OpenMMLab configs (mmpose, mmyolo, mmocr, mmaction2, mmrotate, mmdet3d), ported.

Each YAML under ``tests/configs/openmmlab/`` is a literal transcription of a config's
optimizer, scheduler and train sections (upstream path and commit in its first lines).
It passes ``accelwrap check``; ``accelwrap convert`` of its Python twin gives the same
values; its schedule and its parameter groups equal what MMEngine itself builds from the
same dicts on a small model with the upstream parameter names.
"""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from accelwrap.cli import main
from accelwrap.config import load_config
from accelwrap.registry import to_plain
from accelwrap.runner.train_cfg import parse_train_cfg
from accelwrap.tools.convert import convert
from accelwrap.tools.groups import param_rows
from accelwrap.tools.schedule import simulate

mmengine_optim = pytest.importorskip("mmengine.optim")


@pytest.fixture
def mm_runner(monkeypatch):
    """MMEngine's runner module (its visualization hook imports cv2, which is not needed)."""
    if "cv2" not in sys.modules:
        monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    from mmengine.runner import loops, runner
    return types.SimpleNamespace(Runner=runner.Runner, loops=loops)

HERE = Path(__file__).parents[1] / "configs" / "openmmlab"
CONFIGS = sorted(p.stem for p in HERE.glob("m*.yaml"))
EPOCH_LENGTH = 3
SHORTER = {"mmocr_textdet_sgd_100k": ["train_cfg.max_iters=3000", "param_scheduler.0.end=3000"]}


class Pose(nn.Module):
    """Upstream-like names: backbone (conv + norm), neck, head, pos_embed; an aux head shared."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.neck = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4))
        if shared:
            self.aux_head = self.head


def _model(cfg: dict) -> nn.Module:
    paramwise = cfg["optim_wrapper"].get("paramwise_cfg") or {}
    return Pose(shared=bool(paramwise.get("bypass_duplicate")))


def _load(name: str) -> dict:
    return to_plain(load_config(HERE / f"{name}.yaml", SHORTER.get(name, [])))


def test_ten_configs_from_six_repositories():
    assert len(CONFIGS) >= 10
    assert {n.split("_")[0] for n in CONFIGS} >= {"mmpose", "mmyolo", "mmocr", "mmaction2",
                                                   "mmrotate", "mmdet3d"}


@pytest.mark.parametrize("name", CONFIGS)
def test_transcription_passes_check(name, capsys):
    assert main(["check", str(HERE / f"{name}.yaml")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", CONFIGS)
def test_convert_of_the_python_twin_gives_the_same_values(name):
    converted, report = convert(HERE / "py" / f"{name}.py")
    transcribed = to_plain(load_config(HERE / f"{name}.yaml"))

    def meaning(cfg: dict) -> dict:  # train_cfg.type and by_epoch are two spellings
        return {**cfg, "train_cfg": parse_train_cfg(cfg["train_cfg"])}

    assert meaning(converted) == meaning(transcribed)
    assert "type" not in converted["train_cfg"]
    assert any(line.startswith("kept:") for line in report)


def _mmengine_trace(cfg: dict, model: nn.Module, mm) -> tuple[list, list, object]:
    """Every group's lr (and momentum) per iteration, from MMEngine's own objects."""
    wrapper = mmengine_optim.build_optim_wrapper(model, copy.deepcopy(cfg["optim_wrapper"]))
    names = {id(p): n for n, p in model.named_parameters()}  # first name of each tensor
    settings = {(names[id(p)], key): group[key] for group in wrapper.optimizer.param_groups
                for p in group["params"] for key in ("lr", "weight_decay")}
    schedule = parse_train_cfg(cfg["train_cfg"])
    max_iters = schedule.total_iters(EPOCH_LENGTH)
    loop = object.__new__(type("Loop", (mm.loops.BaseLoop,), {"run": lambda self: None}))
    fake = types.SimpleNamespace(_train_loop=loop, max_epochs=schedule.max_epochs,
                                 max_iters=max_iters, train_dataloader=[0] * EPOCH_LENGTH,
                                 logger=types.SimpleNamespace(debug=lambda *a: None))
    schedulers = mm.Runner._build_param_scheduler(fake, copy.deepcopy(cfg["param_scheduler"]),
                                                 wrapper)
    lrs, momenta = [], []
    for index in range(max_iters):
        groups = wrapper.optimizer.param_groups
        lrs.append([g["lr"] for g in groups])
        momenta.append([g["betas"][0] if "betas" in g else g.get("momentum") for g in groups])
        for s in schedulers:  # MMEngine's ParamSchedulerHook
            if not s.by_epoch:
                s.step()
        if schedule.by_epoch and (index + 1) % EPOCH_LENGTH == 0:
            for s in schedulers:
                if s.by_epoch:
                    s.step()
    return lrs, momenta, settings


@pytest.mark.parametrize("name", CONFIGS)
def test_schedule_and_groups_equal_mmengine(name, mm_runner):
    cfg = _load(name)
    model = _model(cfg)
    lrs, momenta, expected = _mmengine_trace(cfg, model, mm_runner)
    trace = simulate(cfg, epoch_length=EPOCH_LENGTH, model=_model(cfg))
    groups = len(lrs[0])
    for g in range(groups):
        key = "lr" if groups == 1 else f"lr.{g}"  # the runner's scalars.jsonl keys
        assert trace.columns[key] == pytest.approx([row[g] for row in lrs], rel=1e-12), key
        if momenta[0][g] is not None:
            mkey = "momentum" if groups == 1 else f"momentum.{g}"
            assert trace.columns[mkey] == pytest.approx([row[g] for row in momenta], rel=1e-12)
    rows = param_rows(cfg, model=model)[""]
    got = {(r.name, key): r.settings[key] for r in rows for key in ("lr", "weight_decay")
           if r.settings and not r.rule.startswith("shared with")}
    assert got == pytest.approx(expected)
    shared = [r for r in rows if r.rule.startswith("shared with")]
    assert len(shared) == (2 if isinstance(getattr(model, "aux_head", None), nn.Linear) else 0)


def test_dynamic_intervals_validate_when_mmengine_does(mm_runner):
    """The epochs at which MMEngine's EpochBasedTrainLoop runs validation (rtmdet's schedule)."""
    EpochBasedTrainLoop = mm_runner.loops.EpochBasedTrainLoop
    cfg = {"max_epochs": 30, "val_interval": 10, "val_begin": 1, "dynamic_intervals": [(25, 1)]}
    ran: list[int] = []
    runner = types.SimpleNamespace(call_hook=lambda *a, **k: None, model=types.SimpleNamespace(
        train=lambda: None, train_step=lambda *a, **k: {}), optim_wrapper=None)
    loop = EpochBasedTrainLoop(runner, torch.utils.data.DataLoader([0]), **cfg)
    runner.val_loop = types.SimpleNamespace(run=lambda: ran.append(loop.epoch))
    runner.train_loop = loop
    loop.run()
    schedule = parse_train_cfg({"type": "EpochBasedTrainLoop", **cfg})
    assert [e for e in range(1, 31) if schedule.val_due(e, 30)] == ran
