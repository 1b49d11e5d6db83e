"""drop-zero-rnn-state: RNN initial states that exporters build from the input's shape at run time, and that
are all zeros, are dropped (zero is the RNN default); no dynamic dimension is fixed."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.core.graph import (
    all_nodes,
)
from ocrgraft.passes._edit import (
    RNNS,
    const_array,
    remove_unused_values,
)
from ocrgraft.passes.base import Pass, register


def _is_zero(value: ir.Value) -> bool:
    """A tensor that is all zeros whatever the input: a zero constant, or built from one by shape ops."""
    array = const_array(value)
    if array is not None:
        return not np.any(array)
    node = value.producer()
    if node is None or node.domain:
        return False
    if node.op_type == "ConstantOfShape":
        fill = node.attributes.get_tensor("value")
        return fill is None or not np.any(fill.numpy())
    if node.op_type in ("Expand", "Tile", "Reshape", "Unsqueeze", "Squeeze", "Cast", "Identity", "Transpose"):
        return _is_zero(node.inputs[0])
    return False


@register
class DropZeroRnnState(Pass):
    """Drop LSTM/GRU/RNN initial states that are zeros (often built from the input's shape); zero is the
    default.

    torch exports h0/c0 as ConstantOfShape(Concat(1, Shape(x)[1], hidden)) for a dynamic batch, or as a
    zero constant with the example batch baked in, which breaks other batch sizes on some backends. The
    optional inputs are removed and their shape chains with them."""

    name = "drop-zero-rnn-state"

    def rewrite(self, model: ir.Model) -> int:
        count, dead = 0, []
        for node in all_nodes(model):
            if node.op_type not in RNNS or node.domain:
                continue
            states = (5, 6) if node.op_type == "LSTM" else (5,)
            for index in states:
                value = node.inputs[index] if index < len(node.inputs) else None
                if value is not None and _is_zero(value):
                    node.replace_input_with(index, None)
                    dead.append(value)
                    count += 1
            used = [i for i, v in enumerate(node.inputs) if v is not None]
            node.resize_inputs(used[-1] + 1 if used else 0)
        remove_unused_values(model.graph, dead)
        return count
