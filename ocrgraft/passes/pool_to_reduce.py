"""pool-to-reduce: pools whose window spans whole static axes become reductions, as rewrite rules.

Pattern:  y = AveragePool(x)  or  MaxPool(x)    (no pads, no dilation, Indices unread)
          on each spatial axis the window is the whole static axis, or a single element
Rewrite:  y = ReduceMean(x, axes)  or  ReduceMax(x, axes)    (keepdims=1, the whole-axis axes)
          y = x                                            (a window of one element on every axis)
Why:      exporters bake adaptive pooling into a kernel as large as the feature map
          (AdaptiveAvgPool2d((None, 1)) in text recognizers). A reduction says what is meant and has no
          kernel-size limit (Ascend: 255 elements). A window over a dynamic axis is never taken to span
          it: that pool stays, and the reason is given (--explain).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.graph import opset_of
from ocrgraft.passes._edit import POOLS, dims
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import PoolRule, WiresThrough, fresh_initializer, in_main_graph

_REDUCE = {"AveragePool": "ReduceMean", "MaxPool": "ReduceMax"}


class _WholeAxisPool(PoolRule):
    """One pool op type (`op_type`); the rules for AveragePool and MaxPool are made below."""

    def check(self, context, x, pooled, **_) -> MatchResult:
        result = MatchResult()
        node = pooled.producer()
        if not in_main_graph(context):
            return result.fail("it is in an If / Loop body, whose shapes this pass does not read")
        shape = dims(x)
        if shape is None:
            return result.fail(f"the rank of its input '{x.name}' is unknown")
        if len(shape) <= 2:
            return result.fail(f"its input '{x.name}' has rank {len(shape)}: no spatial axes")
        win, why = self.window(node, len(shape) - 2)
        if win is None:
            return result.fail(why)
        kernel, strides, pads, dilations, _ = win
        if any(pads):
            return result.fail(f"it pads its input (pads {pads})")
        if any(d != 1 for d in dilations):
            return result.fail(f"it is dilated (dilations {dilations})")
        axes = []
        for axis, (k, s, size) in enumerate(zip(kernel, strides, shape[2:]), start=2):
            if k == 1 and (s == 1 or size == 1):
                continue  # one element: nothing pooled along this axis
            if size is not None and k == size:
                axes.append(axis)
                continue
            span = "a dynamic axis" if size is None else f"an axis of size {size}"
            return result.fail(
                f"its window {k} (stride {s}) on axis {axis}, {span}, is neither one element "
                "nor the whole axis"
            )
        self._axes = axes
        self._opset, self._graph = opset_of(context.model), context.graph_or_function
        return result

    def rewrite(self, op, x, pooled, **_):
        if not self._axes:
            return op.Identity(x)  # x itself (WiresThrough)
        reduce = getattr(op, _REDUCE[self.op_type])
        if self._opset < 18:
            return reduce(x, axes=self._axes, keepdims=1)
        axes = np.asarray(self._axes, dtype=np.int64)
        return reduce(x, fresh_initializer(op, self._graph, f"{pooled.name}.axes", axes), keepdims=1)


POOL_RULES = tuple(type(f"WholeAxis{op_type}", (_WholeAxisPool,), {"op_type": op_type}) for op_type in POOLS)


@register
class PoolToReduce(WiresThrough):
    """AveragePool/MaxPool windows that span whole static axes become ReduceMean/ReduceMax; 1x1 pools are
    removed.

    Exporters bake adaptive pooling into a kernel as large as the feature map (AdaptiveAvgPool2d((None, 1))
    in text recognizers). A reduction states what is meant and has no kernel-size limit (Ascend: 255
    elements). A pool whose window is a single element (DTRB's pool at image height 32) is an identity and
    is removed."""

    name = "pool-to-reduce"
    needs_shapes = refresh_shapes = True
    rules = POOL_RULES

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in POOLS for n in model.graph)
