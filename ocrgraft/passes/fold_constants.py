"""fold-constants: constant folding that never turns a dynamic dimension into a number.

Exporters leave stale shape annotations (torch.export declares a fixed sequence length on a dynamic
LSTM output), and simplifiers that trust them fold wrong constants. Here every intermediate shape is
forgotten and inferred afresh from the graph inputs before anything is folded."""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.core.graph import all_nodes, infer_shapes_fresh
from ocrgraft.passes.base import Pass, register

# Fold constant subgraphs up to this many elements per tensor (LSTM weight re-packing, shape maths).
FOLD_INPUT_LIMIT = 1 << 22


FOLD_OUTPUT_LIMIT = 1 << 22


@register
class FoldConstants(Pass):
    """Evaluate constant subgraphs and shape computations whose values are proven, keeping dynamic dims
    dynamic."""

    name = "fold-constants"

    def applies(self, model: ir.Model) -> bool:
        """Some node the folder could act on: one whose inputs are all constants, or an op it evaluates
        from shapes (a Shape, a Reshape to the shape it has, ...). On a large graph with neither, the
        shape inference and the folder's walk would cost seconds for nothing."""
        by_shape = _shape_evaluated_ops()
        return any(
            (node.op_type in by_shape and node.domain in ("", "ai.onnx"))
            or all(map(_is_constant, node.inputs))
            for node in all_nodes(model)
        )

    def rewrite(self, model: ir.Model) -> int:
        infer_shapes_fresh(model)
        before = list(model.graph)  # held, so no new node can take a removed one's id
        folded = _folder()(model)
        if folded.modified:  # only what folding left unused; remove-dead-nodes takes the rest
            common.RemoveUnusedNodesPass()(model)
        after = set(map(id, model.graph))
        return sum(id(n) not in after for n in before)


def _is_constant(value: ir.Value | None) -> bool:
    if value is None:  # an omitted optional input
        return True
    node = value.producer()
    if node is not None:
        return node.op_type == "Constant" and not node.domain
    return value.const_value is not None and not value.is_graph_input()


# The folder's evaluators for these act only on a shape value, which comes from a Shape or Size node
# (evaluated themselves) or from constants (folded anyway): alone they can change nothing.
_NEED_SHAPE_VALUES = frozenset({"Add", "Abs", "Gather", "Squeeze"})


def _shape_evaluated_ops() -> set[str]:
    """The standard ops onnxscript's folder has evaluators of its own for (shape arithmetic, no-op
    removal)."""
    from onnxscript.optimizer import _constant_folding

    return {op for domain, op in _constant_folding.registry.op_evaluators if not domain} - _NEED_SHAPE_VALUES


def _folder():
    """onnxscript's folder, except that a node whose evaluator raises is left as it is instead of
    aborting the whole pass (its SplitToSequence evaluator fails on a scalar split of unknown value).
    Evaluators build their replacement on a tape and nothing is swapped in until one returns, so the
    node is left intact."""
    from onnxscript.optimizer import constant_folding

    class Folder(constant_folding.FoldConstantsPass):
        def process_node(self, node: ir.Node, is_function: bool):
            try:
                return super().process_node(node, is_function)
            except Exception as exc:  # noqa: BLE001
                logging.getLogger("ocrgraft.passes").info(
                    "fold-constants left %s alone: %s", node.op_type, exc.__cause__ or exc
                )
                return None

    return Folder(
        shape_inference=False, input_size_limit=FOLD_INPUT_LIMIT, output_size_limit=FOLD_OUTPUT_LIMIT
    )
