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


def map_rows() -> dict[str, str]:
    """The "Where things live" table: path -> what it holds."""
    section = README.read_text().split("## Where things live", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(accelwrap/[^`]*)` \| (.+) \|$", section, flags=re.M))


def test_where_things_live_matches_the_tree():
    """One line per package and module of accelwrap, and no line for anything that is gone."""
    root = README.parent
    tree = {str(p.parent.relative_to(root)) + "/" if p.name == "__init__.py"
            else str(p.relative_to(root)) for p in (root / "accelwrap").rglob("*.py")}
    assert set(map_rows()) == tree
    assert all(len(text) > 10 for text in map_rows().values())
