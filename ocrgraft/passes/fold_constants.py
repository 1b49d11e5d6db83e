"""fold-constants: constant folding that never turns a dynamic dimension into a number.

Exporters leave stale shape annotations (torch.export declares a fixed sequence length on a dynamic
LSTM output), and simplifiers that trust them fold wrong constants. Here every intermediate shape is
forgotten and inferred afresh from the graph inputs before anything is folded."""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.core.graph import (
    infer_shapes_fresh,
)
from ocrgraft.passes.base import Pass, register

# Fold constant subgraphs up to this many elements per tensor (LSTM weight re-packing, shape maths).
FOLD_INPUT_LIMIT = 1 << 22


FOLD_OUTPUT_LIMIT = 1 << 22


@register
class FoldConstants(Pass):
    """Evaluate constant subgraphs and shape computations whose values are proven, keeping dynamic dims
    dynamic."""

    name = "fold-constants"

    def rewrite(self, model: ir.Model) -> int:
        infer_shapes_fresh(model)
        before = list(model.graph)  # held, so no new node can take a removed one's id
        folded = _folder()(model)
        if folded.modified:  # only what folding left unused; remove-dead-nodes takes the rest
            common.RemoveUnusedNodesPass()(model)
        after = set(map(id, model.graph))
        return sum(id(n) not in after for n in before)


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
