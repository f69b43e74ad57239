"""Regenerate the README's "See it" pictures under docs/img/ from the commands that draw them.

    python scripts/make_readme_images.py

Equivalent to::

    cnnatlas plot bubble --out docs/img/bubble.png
    cnnatlas plot layers alexnet_2012 vgg16 --out docs/img/layers_alexnet_vgg16.png

Both are computed from the registered models, the analyser and cnnatlas.published, so rerunning
this after a change to any of them keeps the pictures true.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnatlas.plot import bubble, layers, save_figure

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder for the PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, figure in (
        ("bubble.png", bubble()),
        ("layers_alexnet_vgg16.png", layers(["alexnet_2012", "vgg16"])),
    ):
        print(f"wrote {save_figure(figure, args.out / name)}")


if __name__ == "__main__":
    main()
