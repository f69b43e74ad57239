"""One file per family; importing this package registers every model.

Inside a family file, always the same order: blocks → main class → builder, only where the
class alone cannot be one (a table looked up by name, a choice between classes) → registered
variants (a table of ``Variant`` rows passed to ``register_family``).
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
