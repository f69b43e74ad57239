"""One file per family; importing this package registers every model.

Inside a family file, always the same order: blocks → main class → private builder →
registered variants (a table).
"""

from cnnatlas.models import (  # noqa: F401  (imported for their registrations)
    alexnet,
    densenet,
    fractalnet,
    googlenet,
    lenet,
    mini,
    mobilenet,
    nin,
    resnet,
    squeezenet,
    vgg,
    zfnet,
)
