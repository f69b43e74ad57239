"""alexnet family (being written)."""
