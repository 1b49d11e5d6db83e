"""merge-duplicates: a generic clean-up every target runs: identical nodes on identical inputs become one."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.core.graph import (
    count_nodes,
)
from ocrgraft.passes.base import Pass, register


@register
class MergeDuplicates(Pass):
    """Merge equal small initializers, then nodes that compute the same thing from the same inputs.

    Exporters repeat `Shape(x)`, `Gather(shape, 0)` and their constants once per use; one copy of each
    is left. Initializers up to `max_elements` are compared by content; node merging is onnx_ir's
    common-subexpression elimination (random ops and control flow are never merged)."""

    name = "merge-duplicates"

    def __init__(self, max_elements: int | str = 1024):
        super().__init__()
        self.max_elements = int(max_elements)

    def rewrite(self, model: ir.Model) -> int:
        nodes, inits = count_nodes(model), len(model.graph.initializers)
        seen: dict[tuple, ir.Value] = {}
        for init in list(model.graph.initializers.values()):
            tensor = init.const_value
            if (
                init.is_graph_input()
                or init.is_graph_output()
                or tensor is None
                or tensor.size > self.max_elements
            ):
                continue
            key = (tensor.dtype, tuple(tensor.shape.numpy()), tensor.tobytes())
            if key in seen:
                init.replace_all_uses_with(seen[key])
                model.graph.initializers.pop(init.name)
            else:
                seen[key] = init
        common.CommonSubexpressionEliminationPass()(model)
        return (nodes - count_nodes(model)) + (inits - len(model.graph.initializers))
