"""Training (being written)."""
