"""optical_viz: optimal-transport alignment of multilingual embeddings.

The heavy submodules (torch, transformers, POT) are imported lazily, so that
``import optical_viz`` and ``optical-viz --help`` stay fast.

>>> import optical_viz as ov
>>> enc = ov.load_encoder()                      # the embedded multilingual-e5-small
>>> res = ov.align(enc, "The cat sleeps.", "Le chat dort.")
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_encoder": "optical_viz.encoder",
    "Encoder": "optical_viz.encoder",
    "align": "optical_viz.alignment",
    "distill": "optical_viz.distill",
    "DistillConfig": "optical_viz.distill",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optical_viz' has no attribute {name!r}")
