"""The command line of ``accelwrap train`` / ``scripts/train.py``: one config per run."""

from __future__ import annotations

import pytest

from accelwrap.tools.train import parse_args


@pytest.mark.parametrize("argv, message", [
    (["--config", "a.yaml", "--config", "b.yaml"], "two configs given ('a.yaml' and 'b.yaml')"),
    (["a.yaml", "--config", "b.yaml"], "two configs given ('b.yaml' and 'a.yaml')"),
])
def test_two_configs_are_refused_naming_both(argv, message, capsys):
    with pytest.raises(SystemExit) as done:
        parse_args(argv)
    assert done.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--config", "a.yaml", "x=1"], ["a.yaml", "x=1"],
                                  ["x=1", "a.yaml"]])
def test_one_config_with_overrides_in_either_form(argv):
    args = parse_args(argv)
    assert (args.config, args.overrides) == ("a.yaml", ["x=1"])
