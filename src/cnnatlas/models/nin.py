"""nin family (being written)."""
