"""Documented upper bounds on every size a user can ask for, checked before anything is built.

Each bound is far above any network or data set in the papers cnnatlas follows and far below
what would exhaust memory or time before an error could be raised (docs/security.md).
"""

from __future__ import annotations

#: Classes of a classifier: ImageNet-21k has 21,841; the bound leaves room for any real label set.
MAX_NUM_CLASSES = 100_000
#: Input channels of a network (RGB 3, grey 1, multispectral tens).
MAX_IN_CHANS = 1024
#: Side of an input image in pixels (the image-folder reader refuses more than 8192×8192 pixels).
MAX_IMAGE_SIDE = 8192
#: Images in one batch.
MAX_BATCH_SIZE = 1 << 20
#: DataLoader worker processes.
MAX_WORKERS = 256
