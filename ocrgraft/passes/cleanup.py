"""Generic clean-ups every target runs: dead code, Identity nodes, Constant nodes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common

from ocrgraft.core.graph import all_nodes
from ocrgraft.passes.base import Pass, register


def count_nodes(model: ir.Model, op_type: str | None = None) -> int:
    nodes = all_nodes(model)
    return len(nodes) if op_type is None else sum(1 for n in nodes if n.op_type == op_type)


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
            x, y, graph = node.inputs[0], node.outputs[0], node.graph
            output = y.is_graph_output()
            if output and (x.is_graph_output() or x.producer() is None or x.producer().graph is not graph):
                continue  # x is an input, an initializer, an output or from an outer scope
            y.replace_all_uses_with(x, replace_graph_outputs=True)
            if output:  # the graph's interface keeps its name and declared type
                x.name = y.name
                x.type = x.type if x.type is not None else y.type
                x.shape = x.shape if x.shape is not None else y.shape
            graph.remove(node, safe=True)
            count += 1
        return count


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


@register
class LiftConstants(Pass):
    """Turn Constant nodes into initializers, so folding and vendor parsers see plain weights."""

    name = "lift-constants"

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        for node in all_nodes(model):
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.attributes) != 1:
                continue
            out = node.outputs[0]
            tensor = _constant_tensor(node)
            if tensor is None or not out.name or out.is_graph_output():
                continue
            value = ir.Value(
                name=out.name,
                shape=tensor.shape,
                type=ir.TensorType(tensor.dtype),
                const_value=tensor,
                metadata_props=out.metadata_props.copy(),
            )
            value.meta.update(out.meta)
            node.graph.register_initializer(value)
            out.replace_all_uses_with(value)
            node.graph.remove(node, safe=True)
            count += 1
        return count


_SCALARS = {
    "value_int": np.int64,
    "value_ints": np.int64,
    "value_float": np.float32,
    "value_floats": np.float32,
}


def _constant_tensor(node: ir.Node):
    """A Constant node's value as a tensor, whichever attribute holds it (None for a sparse one).

    The tensor attribute is taken as it is: converting it again would probe Python protocols, which costs
    more than the rest of the pass on a graph with thousands of constants."""
    attr = next(iter(node.attributes.values()))
    if attr.type is ir.AttributeType.TENSOR:
        return attr.value
    if attr.name in _SCALARS:
        return ir.Tensor(np.asarray(attr.value, dtype=_SCALARS[attr.name]), name=node.outputs[0].name)
    if attr.name in ("value_string", "value_strings"):
        return ir.StringTensor(np.array(attr.value, dtype=np.bytes_), name=node.outputs[0].name)
    return None
