"""squeezenet family (being written)."""
