"""zfnet family (being written)."""
