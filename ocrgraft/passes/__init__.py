"""The pass library. Importing this package registers every pass by name."""

from ocrgraft.passes import (  # noqa: F401  (importing registers the passes)
    cleanup,
    conv_affine,
    dims,
    dynamic,
    folding,
    fusion,
    gemm_to_matmul,
    gridsample,
    opset,
    optional,
    pooling,
    precision,
    topk_int32,
)
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
