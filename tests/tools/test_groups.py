"""``accelwrap groups``: the table shows exactly the settings build_optim_wrapper gives."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from accelwrap.cli import main
from accelwrap.optim import build_optim_wrapper
from accelwrap.runner.models import MODELS
from accelwrap.tools.groups import format_table, param_rows


@MODELS.register_module(name="_GroupsTestNet", force=True)
class GroupsNet(nn.Module):
    """Conv + BN, depthwise conv, GroupNorm, a head, a frozen layer and a bare parameter."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.dw = nn.Conv2d(width, width, 3, groups=width)
        self.gn = nn.GroupNorm(2, width)
        self.head = nn.Linear(width, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)
        self.scale = nn.Parameter(torch.ones(1))


@MODELS.register_module(name="_GroupsTestPair", force=True)
class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gen = GroupsNet()
        self.disc = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))


OPTIM = {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4},
         "paramwise_cfg": {"bias_lr_mult": 2.0, "bias_decay_mult": 0.5, "norm_decay_mult": 0.0,
                           "dwconv_decay_mult": 0.1, "flat_decay_mult": 0.3,
                           "custom_keys": {"head": {"lr_mult": 0.1, "momentum": 0.5}}}}


def _actual(model: nn.Module, optim_cfg: dict) -> dict[str, dict]:
    """name -> the optimizer param group build_optim_wrapper puts the parameter in."""
    wrapper = build_optim_wrapper(model, optim_cfg)
    members = getattr(wrapper, "optim_wrappers", None) or {"": wrapper}
    by_id = {id(p): (name, group) for name, member in members.items()
             for group in member.optimizer.param_groups for p in group["params"]}
    out = {}
    for name, param in model.named_parameters():
        if id(param) in by_id:
            member, group = by_id[id(param)]
            out[name] = {k: v for k, v in group.items() if k != "params"}
    return out


def _assert_rows_match(rows_by_member: dict, actual: dict[str, dict]) -> None:
    rows = [row for member in rows_by_member.values() for row in member]
    assert {row.name for row in rows if row.settings} == set(actual)
    for row in rows:
        if not row.settings:
            continue
        group = actual[row.name]
        assert {"lr", "weight_decay"} <= set(row.settings), row
        for key, value in row.settings.items():
            if key in group:
                assert group[key] == pytest.approx(value), (row.name, key)


@pytest.mark.parametrize("merge", [False, True])
def test_rows_match_the_built_param_groups(merge):
    cfg = {"model": {"type": "_GroupsTestNet"},
           "optim_wrapper": {**OPTIM, "paramwise_cfg": {**OPTIM["paramwise_cfg"],
                                                         "merge_groups": merge}}}
    rows = param_rows(cfg)
    _assert_rows_match(rows, _actual(GroupsNet(), cfg["optim_wrapper"]))
    by_name = {row.name: row for row in rows[""]}
    assert by_name["dw.weight"].rule == "dwconv_decay_mult"
    assert by_name["bn.bias"].rule == "norm_decay_mult"
    assert by_name["head.bias"].rule == "custom_keys['head']"
    assert by_name["conv.bias"].settings["lr"] == pytest.approx(0.2)
    assert (by_name["frozen.weight"].settings == {}
            and by_name["frozen.weight"].rule.startswith("skipped"))
    assert by_name["scale"].module_type == "GroupsNet" and by_name["scale"].shape == (1,)


def test_rows_match_for_an_optim_wrapper_dict():
    cfg = {"model": {"type": "_GroupsTestPair"},
           "optim_wrapper": {"gen": OPTIM, "disc": {"optimizer": {"type": "Adam", "lr": 0.01}}}}
    rows = param_rows(cfg)
    assert list(rows) == ["gen", "disc"]
    _assert_rows_match(rows, _actual(Pair(), cfg["optim_wrapper"]))


def test_command_prints_table_and_totals(tmp_path, capsys):
    path = tmp_path / "groups.yaml"
    path.write_text(yaml.safe_dump({"model": {"type": "_GroupsTestNet"}, "optim_wrapper": OPTIM}))
    assert main(["groups", str(path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("head.weight"))
    assert line.split() == ["head.weight", "4x8", "Linear", "0.01", "0.0001", "0.1", "0.5",
                            "custom_keys['head']"]
    assert "not optimized: 2 tensors, 20 parameters" in out
    assert main(["groups", str(path), "--merged"]) == 0
    merged = capsys.readouterr().out
    line = next(line for line in merged.splitlines() if line.startswith("frozen.weight"))
    assert line.split()[2:5] == ["2", "20", "-"]


def test_custom_key_matching_nothing_is_a_warning_and_with_strict_an_error(tmp_path, capsys):
    path = tmp_path / "groups.yaml"
    path.write_text(yaml.safe_dump({"model": {"type": "_GroupsTestNet"}, "optim_wrapper": OPTIM}))
    typo = "optim_wrapper.paramwise_cfg.custom_keys={haed: {lr_mult: 0.1}}"
    assert main(["groups", str(path), typo]) == 0
    err = capsys.readouterr().err
    assert "warning: paramwise_cfg.custom_keys['haed'] matches no parameter" in err
    assert "'head'" in err
    strict = "+optim_wrapper.paramwise_cfg.strict_custom_keys=true"
    assert main(["groups", str(path), typo, strict]) == 1
    err = capsys.readouterr().err
    assert "custom_keys['haed'] matches no parameter" in err and "'head'" in err


def test_table_formats_without_a_config():
    cfg = {"model": {"type": "_GroupsTestNet", "width": 4},
           "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.5}}}
    text = format_table(param_rows(cfg))
    assert text.splitlines()[0].split() == ["parameter", "shape", "module", "lr", "weight_decay",
                                            "rule"]
    assert text.splitlines()[2].split() == ["scale", "1", "GroupsNet", "0.5", "0", "default"]
    assert "setting 0: 13 tensors" in text  # without paramwise_cfg frozen ones are handed over too
