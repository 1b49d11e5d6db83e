"""eliminate-identity: a generic clean-up every target runs: Identity nodes go, graph outputs keep their
names."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.core.graph import all_nodes
from ocrgraft.passes.base import Pass, register
from ocrgraft.passes.rules import wire_through


@register
class EliminateIdentity(Pass):
    """Remove Identity nodes (paddle2onnx and exporters leave many) by wiring their input through.

    `y = Identity(x)` where y is an output of its graph (main graph, If branch, Loop/Scan body,
    function) can go only when x is computed in that same graph and is not an output itself: x then
    takes y's name and place. Otherwise it stays: an input or initializer would have to be renamed, a
    body listing one value twice makes ONNX Runtime return uninitialised memory (Scan), and a branch may
    not return an outer-scope value directly. (onnx_ir's IdentityEliminationPass does the last two.)"""

    name = "eliminate-identity"

    def rewrite(self, model: ir.Model) -> int:
        nodes = all_nodes(model)
        nodes += [n for f in model.functions.values() for n in ir.traversal.RecursiveGraphIterator(f)]
        count = 0
        for node in nodes:
            if (
                node.op_type != "Identity"
                or node.domain not in ("", "ai.onnx")
                or len(node.inputs) != 1
                or len(node.outputs) != 1
                or node.inputs[0] is None
            ):
                continue
            count += wire_through(node)
        return count
