"""drop-zero-rnn-state: LSTM/GRU/RNN initial states that are all zeros dropped (zero is the default), as
rewrite rules.

Pattern:  y, ... = LSTM(x, W, R, B, seq, h0, c0)     (GRU, RNN: h0 only)
          h0, c0 all zeros: a zero constant, or ConstantOfShape(0) through Expand/Tile/Reshape/... chains
Rewrite:  y, ... = LSTM(x, W, R, B, seq)              (trailing empty inputs trimmed)
Why:      exporters build zero states from the input's shape at run time, or bake the example batch into a
          zero constant, which breaks other batch sizes on some backends; the states and their shape chains
          go and no dynamic dimension is fixed. A state that is not provably zero stays (--explain names it).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.graph import all_nodes
from ocrgraft.passes._edit import RNNS, const_array
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass

_OUTPUTS = {"LSTM": ("y", "y_h", "y_c"), "GRU": ("y", "y_h"), "RNN": ("y", "y_h")}


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


def _state_indices(node: ir.Node) -> list[int]:
    """The initial-state inputs the node has: h0 (5), and c0 (6) for an LSTM."""
    states = (5, 6) if node.op_type == "LSTM" else (5,)
    return [i for i in states if i < len(node.inputs) and node.inputs[i] is not None]


class ZeroState(Rule):
    """One op type and output count (onnxscript binds a node's outputs by position, and every output read
    elsewhere must be replaced): `rules` below lists one subclass per pair."""

    op_type: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]

    def __init__(self, orphans: list[ir.Value] | None = None):
        super().__init__(orphans)
        # every output is replaced; a rule for fewer outputs than the node has reaches the check, which
        # steps aside without a reason, instead of being refused as a near miss with other uses
        self.remove_nodes = False

    def pattern(self, op, x):
        rnn = getattr(op, self.op_type)
        return rnn(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=list(self.outputs))

    def check(self, context, x, y, **_) -> MatchResult:
        result = MatchResult()
        node = y.producer()
        if len(node.outputs) != len(self.outputs):
            return result.fail("")  # no reason: the rule for this many outputs decides
        present = _state_indices(node)
        if not present:
            return self.done(result)
        self._zero = [i for i in present if _is_zero(node.inputs[i])]
        if not self._zero:
            names = " and ".join(f"'{node.inputs[i].name}'" for i in present)
            states = "state" if len(present) == 1 else "states"
            verb = "is" if len(present) == 1 else "are"
            return result.fail(f"its initial {states} {names} {verb} not all zeros")
        self.replaced(*(node.inputs[i] for i in self._zero))
        return result

    def rewrite(self, op, x, y, **_):
        node = y.producer()
        inputs = [None if i in self._zero else v for i, v in enumerate(node.inputs)]
        while inputs and inputs[-1] is None:
            inputs.pop()
        rnn = getattr(op, self.op_type)
        return rnn(*inputs, _outputs=len(self.outputs), _name=node.name, **node.attributes)


RULES = tuple(
    type(f"ZeroState{op_type}", (ZeroState,), {"op_type": op_type, "outputs": names[:count]})
    for op_type, names in _OUTPUTS.items()
    for count in range(1, len(names) + 1)
)


def _states(model: ir.Model) -> int:
    return sum(len(_state_indices(n)) for n in all_nodes(model) if n.op_type in RNNS and not n.domain)


@register
class DropZeroRnnState(RulePass):
    """Drop LSTM/GRU/RNN initial states that are zeros (often built from the input's shape); zero is the
    default.

    torch exports h0/c0 as ConstantOfShape(Concat(1, Shape(x)[1], hidden)) for a dynamic batch, or as a
    zero constant with the example batch baked in, which breaks other batch sizes on some backends. The
    optional inputs are removed and their shape chains with them."""

    name = "drop-zero-rnn-state"
    rules = RULES

    def rewrite(self, model: ir.Model) -> int:
        """Counts the states dropped (an LSTM's h0 and c0 are two rewrites), not the nodes rewritten."""
        before = _states(model)
        return before - _states(model) if super().rewrite(model) else 0
