"""Built-in classifiers."""

from __future__ import annotations

from xcf import hookimpl

from .small_cnn import SmallCNN

__all__ = ["SmallCNN"]


@hookimpl
def xcf_register_classifiers(register) -> None:
    register("small-cnn", SmallCNN,
             description="fast CPU classifier: 5 conv-BN-ReLU blocks (16-32-64-96-128), global average pool, ~0.3 M params")
