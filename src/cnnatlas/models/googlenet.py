"""googlenet family (being written)."""
