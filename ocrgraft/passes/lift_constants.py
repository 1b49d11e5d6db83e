"""lift-constants: a generic clean-up every target runs: Constant nodes become initializers."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.core.graph import (
    all_nodes,
)
from ocrgraft.passes.base import Pass, register


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
