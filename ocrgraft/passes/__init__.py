"""The pass library. Importing this package registers every pass by name."""

from ocrgraft.passes.base import (
    CHANGES, EXACT, LEGALIZE, Pass, PassResult, get_pass, list_passes, parse_pass_list, register,
)
from ocrgraft.passes import cleanup, dims, folding  # noqa: F401  (registers the passes)

__all__ = ["CHANGES", "GENERIC_PASSES", "EXACT", "LEGALIZE", "Pass", "PassResult", "get_pass", "list_passes",
           "parse_pass_list", "register"]

# The clean-ups every target runs first, in this order.
GENERIC_PASSES = ("eliminate-identity", "lift-constants", "fold-constants", "remove-dead-nodes", "infer-shapes")
