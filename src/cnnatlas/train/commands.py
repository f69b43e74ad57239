"""`cnnatlas train` and `cnnatlas recipes` (being written)."""


def add_commands(sub) -> None:  # noqa: ANN001
    pass
