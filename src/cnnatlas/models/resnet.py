"""resnet family (being written)."""
