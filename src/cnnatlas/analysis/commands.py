"""`cnnatlas summary` and `cnnatlas compare` (being written)."""


def add_commands(sub) -> None:  # noqa: ANN001
    pass
