"""Imported by the Lambda forkserver only (the last of lambda_runtime's preloaded modules): preloads the layers.

See :mod:`local_stack.layer_preload`. A failed preload costs time, not correctness: the environments then import the
layers' modules themselves.
"""

import logging

from local_stack.layer_preload import preload

try:
    PRELOADED = preload()
except Exception:
    logging.getLogger(__name__).exception("the layers' modules could not be preloaded")
    PRELOADED = []
