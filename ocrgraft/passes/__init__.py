"""The pass library. Importing this package registers every pass by name."""

from ocrgraft.passes.base import (
    CHANGES, EXACT, LEGALIZE, Pass, PassResult, get_pass, list_passes, parse_pass_list, register,
)
from ocrgraft.passes import cleanup, dims, folding  # noqa: F401  (registers the passes)
from ocrgraft.passes import dynamic, gridsample, opset, optional, pooling, precision  # noqa: F401

__all__ = ["CHANGES", "CLEANUP_PASSES", "GENERIC_PASSES", "EXACT", "LEGALIZE", "Pass", "PassResult", "get_pass", "list_passes",
           "parse_pass_list", "register"]

# The clean-ups every target runs first, in this order; fresh shape inference closes every pipeline.
CLEANUP_PASSES = ("eliminate-identity", "lift-constants", "fold-constants", "remove-dead-nodes")
GENERIC_PASSES = CLEANUP_PASSES + ("infer-shapes",)
