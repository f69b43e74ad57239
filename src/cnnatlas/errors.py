"""One small error hierarchy.

Library code raises these; only :mod:`cnnatlas.cli` turns them into exit codes (2 for every
``CnnAtlasError``). Each message is one sentence a user can act on.
"""

from __future__ import annotations


class CnnAtlasError(Exception):
    """Base of every error cnnatlas reports to a user (exit code 2 on the command line)."""


class InputError(CnnAtlasError, ValueError):
    """A bad argument: unknown model/recipe/data set, impossible value, wrong input tensor."""


class DataError(CnnAtlasError):
    """A data file is missing, truncated, corrupt or of the wrong format."""


class CheckpointError(CnnAtlasError):
    """A checkpoint or weight file is missing, corrupt, or for another architecture."""
