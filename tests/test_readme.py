"""The README's promises: two set-up commands first, and a model table that is the registry."""

from __future__ import annotations

import re
from pathlib import Path

from cnnatlas.cli.models import model_rows, models_markdown
from cnnatlas.registry import list_models

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_two_setup_commands() -> None:
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].endswith("cnnatlas train lenet5")
    assert "pip install -e '.[dev]'" in first_block[1]
    test_command = first_block[1].split("&&")[-1].split()
    assert test_command[:3] == ["python", "-m", "pytest"]
    # CI runs the README's test command (it may add -q)
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text(encoding="utf-8")
    ci_command = next(line.split() for line in ci.splitlines() if line.startswith("python -m pytest"))
    assert set(test_command) <= set(ci_command) <= set(test_command) | {"-q"}


def test_model_table_lists_every_registered_model_with_its_figures() -> None:
    table = re.search(r"<!-- models-table:start -->\n(.*?)\n<!-- models-table:end -->", README, flags=re.S)
    assert table, "README lost its model table markers"
    expected = models_markdown(model_rows(list_models()))
    assert table.group(1) == expected, "README model table is stale: run python scripts/update_readme_table.py"
