"""``python -m cnnatlas`` — the same as the ``cnnatlas`` command."""

import sys

from cnnatlas.cli import main

if __name__ == "__main__":
    sys.exit(main())
