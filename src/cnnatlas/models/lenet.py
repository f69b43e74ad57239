"""lenet family (being written)."""
