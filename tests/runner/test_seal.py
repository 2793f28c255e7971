"""The state file's seal: the CRC-32 of its text before the seal line, which comes last;
state files sealed the older way (the CRC-32 of the canonical JSON) still read."""

from __future__ import annotations

import json
import zlib

import pytest

from accelwrap.errors import DamagedCheckpointError
from accelwrap.runner.manifest import read_sealed, sealed_text

STATE = {"iter": 40, "wrappers": {"": {"inner_count": 40}}, "manifest": {"a.bin": [3, 7]},
         "epoch": 2}


def test_the_seal_line_comes_last_and_sums_the_text_before_it(tmp_path):
    text = sealed_text(STATE)
    body, last = text.rstrip("\n}").rsplit(",\n", 1)
    assert last.startswith('"state_crc32": ')
    assert int(last.split(": ")[1]) == zlib.crc32(f"{body}".encode())
    assert [line.split(":")[0] for line in body.splitlines()[1:]] == \
        ['"epoch"', '"iter"', '"manifest"', '"wrappers"']
    (tmp_path / "s.json").write_text(text)
    assert read_sealed(tmp_path / "s.json") == {**STATE, "state_crc32": int(last.split(": ")[1])}


@pytest.mark.parametrize("edit", [("40", "41"), ('"epoch": 2', '"epoch": 3'),
                                  ('"state_crc32": ', '"state_crc32": 1')])
def test_any_edit_breaks_the_seal(tmp_path, edit):
    (tmp_path / "s.json").write_text(sealed_text(STATE).replace(*edit, 1))
    with pytest.raises(DamagedCheckpointError, match="does not match its state_crc32 seal"):
        read_sealed(tmp_path / "s.json")


def test_a_state_file_sealed_the_older_way_still_reads(tmp_path):
    canonical = json.dumps(STATE, sort_keys=True, separators=(",", ":"))
    old = {**STATE, "state_crc32": zlib.crc32(canonical.encode())}
    lines = [f"{json.dumps(k)}: {json.dumps(old[k], sort_keys=True)}" for k in sorted(old)]
    (tmp_path / "s.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")  # seal not last
    assert read_sealed(tmp_path / "s.json") == old
    (tmp_path / "s.json").write_text(json.dumps({**old, "iter": 41}))
    with pytest.raises(DamagedCheckpointError, match="seal"):
        read_sealed(tmp_path / "s.json")
