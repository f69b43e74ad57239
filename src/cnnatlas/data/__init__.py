"""Data sets (being written)."""
