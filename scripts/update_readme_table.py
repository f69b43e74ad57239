"""Regenerate the README's model table from the registry (tests/test_readme.py checks it)."""

from __future__ import annotations

import re
from pathlib import Path

from cnnatlas.cli.models import model_rows, models_markdown
from cnnatlas.registry import list_models

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- models-table:start -->", "<!-- models-table:end -->"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    table = models_markdown(model_rows(list_models()))
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), f"{START}\n{table}\n{END}", text, flags=re.S)
    README.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    main()
