"""vgg family (being written)."""
