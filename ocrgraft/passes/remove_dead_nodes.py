"""remove-dead-nodes: a generic clean-up every target runs: nodes whose outputs nobody reads go."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.core.graph import (
    count_nodes,
)
from ocrgraft.passes.base import Pass, register


@register
class RemoveDeadNodes(Pass):
    """Remove nodes, initializers and opset imports that no graph output depends on."""

    name = "remove-dead-nodes"

    def rewrite(self, model: ir.Model) -> int:
        nodes, inits = count_nodes(model), len(model.graph.initializers)
        common.RemoveUnusedNodesPass()(model)
        if model.functions:
            common.RemoveUnusedFunctionsPass()(model)
        return (nodes - count_nodes(model)) + (inits - len(model.graph.initializers))
