"""Generic clean-ups every target runs: dead code, Identity nodes, Constant nodes."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.passes.base import Pass, register


def count_nodes(model: ir.Model, op_type: str | None = None) -> int:
    return sum(1 for n in ir.traversal.RecursiveGraphIterator(model.graph) if op_type in (None, n.op_type))


@register
class EliminateIdentity(Pass):
    """Remove Identity nodes (paddle2onnx and exporters leave many) by wiring their input through."""

    name = "eliminate-identity"

    def rewrite(self, model: ir.Model) -> int:
        before = count_nodes(model, "Identity")
        common.IdentityEliminationPass()(model)
        return before - count_nodes(model, "Identity")


@register
class RemoveDeadNodes(Pass):
    """Remove nodes, initializers and opset imports that no graph output depends on."""

    name = "remove-dead-nodes"

    def rewrite(self, model: ir.Model) -> int:
        nodes, inits = count_nodes(model), len(model.graph.initializers)
        common.RemoveUnusedNodesPass()(model)
        common.RemoveUnusedFunctionsPass()(model)
        return (nodes - count_nodes(model)) + (inits - len(model.graph.initializers))


@register
class LiftConstants(Pass):
    """Turn Constant nodes into initializers, so folding and vendor parsers see plain weights."""

    name = "lift-constants"

    def rewrite(self, model: ir.Model) -> int:
        before = count_nodes(model, "Constant")
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
        return before - count_nodes(model, "Constant")
