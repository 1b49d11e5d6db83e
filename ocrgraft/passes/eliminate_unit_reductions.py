"""eliminate-unit-reductions: reductions over unit axes removed (what simplifiers do), never fixing a dynamic
dimension, as rewrite rules.

Pattern:  y = ReduceMean(x, axes)     (ReduceSum / ReduceMax / ReduceMin / ReduceProd alike; axes an
                                       attribute, or a constant input from opset 13 / 18)
          every reduced axis of x static and of size 1
Rewrite:  y = x                       (keepdims=1)
          y = Squeeze(x, axes)        (keepdims=0)
Why:      the mean, sum, max, min or product of one element is that element. AdaptiveAvgPool2d((None, 1))
          over a map already 1 high (the DTRB recognizer at height 32) exports as such a ReduceMean. A
          dynamic axis is never taken to be 1: that reduction stays, and the reason is given (--explain).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.graph import opset_of
from ocrgraft.passes._edit import axes_of, dims
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, WiresThrough, fresh_initializer, in_main_graph

_UNIT_REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")


# -- shared with pool-to-reduce and maxpool3d-to-2d --------------------------------------------------------


# -- the rules ---------------------------------------------------------------------------------------------


class _UnitReduction(Rule):
    """One reduction op type (`op_type`); the rules for the five are made below."""

    op_type: ClassVar[str]

    def pattern(self, op, x):
        return getattr(op, self.op_type)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["reduced"]
        )

    def check(self, context, x, reduced, **_) -> MatchResult:
        result = MatchResult()
        node = reduced.producer()
        if not in_main_graph(context):
            return result.fail("it is in an If / Loop body, whose shapes this pass does not read")
        shape, axes = dims(x), axes_of(node)
        if shape is None:
            return result.fail(f"the rank of its input '{x.name}' is unknown")
        if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
            return result.fail(f"its axes '{node.inputs[1].name}' are computed at run time")
        if not axes:  # none given: all of them, or none at all (noop_with_empty_axes)
            return result.fail("it names no axes: it reduces over all of them (or none)")
        if not shape:
            return result.fail(f"its input '{x.name}' is a scalar")
        axes = sorted(a % len(shape) for a in axes)
        for axis in axes:
            if shape[axis] is None:
                return result.fail(f"axis {axis} is dynamic, so it is not known to be 1")
            if shape[axis] != 1:
                return result.fail(f"axis {axis} has size {shape[axis]}, not 1")
        self._squeeze = None if node.attributes.get_int("keepdims", 1) else axes
        self._opset, self._graph = opset_of(context.model), context.graph_or_function
        self.replaced(*node.inputs[1:])
        return result

    def rewrite(self, op, x, reduced, **_):
        if self._squeeze is None:
            return op.Identity(x)  # x itself (WiresThrough)
        if self._opset < 13:
            return op.Squeeze(x, axes=self._squeeze)
        axes = np.asarray(self._squeeze, dtype=np.int64)
        return op.Squeeze(x, fresh_initializer(op, self._graph, f"{reduced.name}.axes", axes))


UNIT_REDUCTION_RULES = tuple(
    type(f"Unit{op_type}", (_UnitReduction,), {"op_type": op_type}) for op_type in _UNIT_REDUCTIONS
)


@register
class EliminateUnitReductions(WiresThrough):
    """Remove reductions over axes of size 1: they are the identity (keepdims) or a Squeeze.

    AdaptiveAvgPool2d((None, 1)) over a map already 1 high (the DTRB recognizer at height 32) exports as a
    ReduceMean over a static axis of 1. Mean, sum, max, min and product of one element are that element."""

    name = "eliminate-unit-reductions"
    needs_shapes = True
    rules = UNIT_REDUCTION_RULES

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in _UNIT_REDUCTIONS for n in model.graph)
