"""fractalnet family (being written)."""
