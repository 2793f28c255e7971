"""The README's Python examples run as written, so they cannot rot."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, capsys):
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), {"__name__": "__readme__"})


def test_readme_commands_match_ci():
    """The README's test command is the one .ci/run executes."""
    ci = (README.parent / ".ci" / "run").read_text()
    command = re.search(r"python -m pytest[^\n]*", ci).group(0)
    assert command in README.read_text()
