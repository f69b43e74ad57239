"""`cnnatlas evaluate` and `cnnatlas predict` (being written)."""


def add_commands(sub) -> None:  # noqa: ANN001
    pass
