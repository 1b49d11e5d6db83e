"""The pass library. Importing this package registers every pass by name."""

import importlib
import pkgutil

from ocrgraft.passes.base import (
    CHANGES,
    EXACT,
    LEGALIZE,
    Pass,
    PassResult,
    get_pass,
    list_passes,
    parse_pass_list,
    register,
)

# One module per pass, named after it (fuse-conv-affine lives in fuse_conv_affine.py); importing registers it.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name not in ("base", "rules"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CHANGES",
    "CLEANUP_PASSES",
    "GENERIC_PASSES",
    "EXACT",
    "LEGALIZE",
    "Pass",
    "PassResult",
    "get_pass",
    "list_passes",
    "parse_pass_list",
    "register",
]

# The clean-ups every target runs first, in this order; fresh shape inference closes every pipeline.
# The shape-free rewrites come before fold-constants, so its shape inference and folder see the smaller graph.
CLEANUP_PASSES = (
    "eliminate-identity",
    "lift-constants",
    "eliminate-reshapes",
    "fuse-conv-affine",
    "fold-constants",
    "adaptive-avgpool-to-pool",
    "eliminate-unit-reductions",
    "fold-reshape-shapes",
    "drop-zero-rnn-state",
    "merge-duplicates",
    "remove-dead-nodes",
)
GENERIC_PASSES = CLEANUP_PASSES + ("infer-shapes",)
