"""Shape inference and constant folding that never turn a dynamic dimension into a number.

Exporters leave stale shape annotations (torch.export declares a fixed sequence length on a dynamic
LSTM output), and simplifiers that trust them fold wrong constants. Here every intermediate shape is
forgotten and inferred afresh from the graph inputs before anything is folded.
"""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.passes.base import Pass, register
from ocrgraft.passes.cleanup import count_nodes

# Fold constant subgraphs up to this many elements per tensor (LSTM weight re-packing, shape maths).
FOLD_INPUT_LIMIT = 1 << 22
FOLD_OUTPUT_LIMIT = 1 << 22


def _computed_values(model: ir.Model):
    for node in model.graph:
        yield from node.outputs


def _shape_key(value: ir.Value) -> str:
    return str(value.shape)


def infer_shapes_fresh(model: ir.Model) -> int:
    """Re-infer every intermediate and output shape from the inputs; returns how many changed."""
    before = {id(v): _shape_key(v) for v in _computed_values(model)}
    declared = {id(v): v.shape for v in model.graph.outputs}
    graph_inputs = {id(v) for v in model.graph.inputs}
    for value in _computed_values(model):
        if id(value) not in graph_inputs:
            value.shape = None
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)
    common.ShapeInferencePass(strict_mode=False, data_prop=True)(model)
    for value in model.graph.outputs:
        value.shape = _merge_output_shape(declared.get(id(value)), value.shape)
    return sum(1 for v in _computed_values(model) if before.get(id(v)) != _shape_key(v))


def _merge_output_shape(declared: ir.Shape | None, inferred: ir.Shape | None) -> ir.Shape | None:
    """A proven number wins; a declared number that inference cannot prove gives way to the inferred
    (unknown) dim; a declared dim name is kept. Without an inferred rank the declaration stands."""
    if inferred is None or declared is None or len(declared) != len(inferred):
        return inferred if declared is None else declared
    dims = []
    for d, i in zip(declared, inferred):
        if isinstance(i, int):
            dims.append(i)
        elif not isinstance(d, int) and d.value:
            dims.append(d)
        else:
            dims.append(i if i.value else None)
    return ir.Shape(dims)


@register
class InferShapes(Pass):
    """Infer all intermediate and output shapes afresh from the inputs, dropping stale annotations."""

    name = "infer-shapes"

    def rewrite(self, model: ir.Model) -> int:
        return infer_shapes_fresh(model)


@register
class FoldConstants(Pass):
    """Evaluate constant subgraphs and shape computations whose values are proven, keeping dynamic dims dynamic."""

    name = "fold-constants"

    def rewrite(self, model: ir.Model) -> int:
        import onnxscript.optimizer as optimizer

        infer_shapes_fresh(model)
        before = {id(n) for n in model.graph}
        optimizer.fold_constants(model, input_size_limit=FOLD_INPUT_LIMIT, output_size_limit=FOLD_OUTPUT_LIMIT)
        common.RemoveUnusedNodesPass()(model)
        return len(before - {id(n) for n in model.graph})
