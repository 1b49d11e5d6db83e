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

from ocrgraft.core.graph import all_nodes, opset_of
from ocrgraft.passes._edit import axes_of, dims
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass

_UNIT_REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")


# -- shared with pool-to-reduce and maxpool3d-to-2d --------------------------------------------------------


class WiresThrough(RulePass):
    """A RulePass whose rules may rewrite a node to its input itself: they return `op.Identity(x)`, and
    the Identity nodes the run made are then removed as `Editor.replace` would, x taking the node's
    place (and, for a graph output, its name). An Identity stays only where the output is a graph
    output and x a graph input, initializer, another output or an outer-scope value, which cannot be
    renamed. (Returning x itself would have the rewriter give x the replaced value's name.)"""

    def rewrite(self, model: ir.Model) -> int:
        before = all_nodes(model)  # held, so a new node cannot reuse a removed one's id
        count = super().rewrite(model)
        if count:
            seen = set(map(id, before))
            for node in all_nodes(model):
                if id(node) not in seen and node.op_type == "Identity" and not node.domain:
                    _wire_through(node)
        return count


def _wire_through(node: ir.Node) -> None:
    x, y, graph = node.inputs[0], node.outputs[0], node.graph
    output = y.is_graph_output()
    if output and (x.is_graph_output() or x.producer() is None or x.producer().graph is not graph):
        return
    y.replace_all_uses_with(x, replace_graph_outputs=True)
    if output:  # the graph's interface keeps its name and declared type
        x.name = y.name
        x.type = x.type if x.type is not None else y.type
        x.shape = x.shape if x.shape is not None else y.shape
    graph.remove(node, safe=True)


def fresh_initializer(op, graph: ir.Graph, hint: str, array: np.ndarray) -> ir.Value:
    """A new initializer for a rewrite, named after `hint` and unlike any initializer of the graph (the
    rewriter keeps an existing initializer of the same name)."""
    name, i = hint, 1
    while name in graph.initializers:
        name, i = f"{hint}_{i}", i + 1
    return op.initializer(ir.Tensor(array, name=name), name)


def in_main_graph(context) -> bool:
    """Whether the match is in the main graph: only its shapes are inferred afresh for a pass, so a rule
    that reads shapes rewrites nothing in an If / Loop body."""
    return context.graph_or_function is context.model.graph


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
