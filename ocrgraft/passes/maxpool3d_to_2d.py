"""maxpool3d-to-2d: MaxPool3d on a 4-D tensor (LPRNet) as two 2-D pools, as rewrite rules.

Pattern:  y = MaxPool(x)                                  3-D kernel, x 4-D [C, D, H, W] (not valid ONNX)
          y = Squeeze(MaxPool(Unsqueeze(x, 0)), 0)        3-D kernel, x 4-D (the dynamo export)
Rewrite:  y = Transpose(MaxPool(Transpose(MaxPool(x, kh x kw), [0, 3, 2, 1]), 1 x kd), [0, 3, 2, 1])
          (either pool left out where its window is one element; y = x when both are)
Why:      torch exports nn.MaxPool3d on an unbatched 4-D tensor as a MaxPool with a 3-D kernel on a 4-D
          input, which ONNX Runtime refuses to load; the dynamo exporter wraps a 5-D MaxPool in
          Unsqueeze / Squeeze, which TensorRT and Sophon's toolchain reject. A 3-D max is separable: pool H
          and W first, then the channel axis, moved into a spatial slot by a Transpose. Shapes after an
          invalid pool are known only once it is fixed, so the rules run again after each fix.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.passes._edit import axes_of, ensure_shapes, ints, only_use, pool_indices_unused, pool_window
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import PoolRule, Rule, WiresThrough, in_main_graph


def _unsqueezed_axis0(value: ir.Value) -> ir.Value | None:
    """The 4-D tensor that `value` is an Unsqueeze at axis 0 of, else None."""
    node = value.producer()
    if node is None or node.op_type != "Unsqueeze" or node.domain or axes_of(node) not in ([0], [-5]):
        return None
    src = node.inputs[0]
    return src if src.shape is not None and len(src.shape) == 4 else None


def _squeeze_axis0(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Squeeze" and not node.domain and axes_of(node) in ([0], [-5])


def _unsqueezed_form(pool: ir.Node) -> ir.Value | None:
    """The 4-D tensor x if the MaxPool is the one of Squeeze(MaxPool(Unsqueeze(x, 0)), 0), else None."""
    src = _unsqueezed_axis0(pool.inputs[0])
    return src if src is not None and _squeeze_axis0(only_use(pool.outputs[0])) else None


def _two_pools(op, x: ir.Value, kernel, strides, pads, dilations, ceil_mode) -> ir.Value:
    """The 3-D max pool over [C, D, H, W] as a pool over (H, W), then one over D moved into W's slot."""
    (kd, kh, kw), (sd, sh, sw), (dd, dh, dw) = kernel, strides, dilations
    pd0, ph0, pw0, pd1, ph1, pw1 = pads
    y = x
    if (kh, kw, sh, sw, ph0, pw0, ph1, pw1) != (1, 1, 1, 1, 0, 0, 0, 0):
        y = op.MaxPool(
            y,
            kernel_shape=[kh, kw],
            strides=[sh, sw],
            pads=[ph0, pw0, ph1, pw1],
            dilations=[dh, dw],
            ceil_mode=ceil_mode,
        )
    if (kd, sd, pd0, pd1) != (1, 1, 0, 0):
        t = op.Transpose(y, perm=[0, 3, 2, 1])
        t = op.MaxPool(
            t,
            kernel_shape=[1, kd],
            strides=[1, sd],
            pads=[0, pd0, 0, pd1],
            dilations=[1, dd],
            ceil_mode=ceil_mode,
        )
        y = op.Transpose(t, perm=[0, 3, 2, 1])
    return op.Identity(x) if y is x else y  # x itself (WiresThrough)


class MaxPool3dOn4d(PoolRule):
    """The MaxPool with a 3-D kernel on a 4-D input. Where it is the pool of the Unsqueeze / Squeeze form,
    the rule at the Squeeze rewrites it (and this one stays silent)."""

    op_type = "MaxPool"

    def check(self, context, x, pooled, **_) -> MatchResult:
        result = MatchResult()
        node = pooled.producer()
        kernel = ints(node, "kernel_shape")
        if kernel is None or len(kernel) != 3:
            return self.done(result)  # a 1-D or 2-D pool, the form this pass writes
        if not in_main_graph(context):
            return result.fail("it is in an If / Loop body, whose shapes this pass does not read")
        self._window, why = self.window(node, 3)
        if self._window is None:
            return result.fail(why)
        if x.shape is not None and len(x.shape) == 4:
            return result
        if _unsqueezed_form(node) is not None:
            return self.done(result)  # the rule at the Squeeze rewrites it
        if x.shape is None:
            return result.fail(f"the rank of its input '{x.name}' is unknown")
        return result.fail(
            f"its input '{x.name}' has rank {len(x.shape)}, not 4, and is not an Unsqueeze at axis 0 "
            "of a 4-D tensor with a Squeeze at axis 0 after the pool"
        )

    def rewrite(self, op, x, pooled, **_):
        return _two_pools(op, x, *self._window)


class MaxPool3dUnsqueezed(Rule):
    """Squeeze(MaxPool(Unsqueeze(x, 0)), 0), at the Squeeze. The MaxPool is a plain variable of the
    pattern, not a node of it: every other Squeeze of the model would otherwise count as a near miss in
    --explain. Where the form is not complete, MaxPool3dOn4d says why at the MaxPool."""

    def pattern(self, op, pooled):
        return op.Squeeze(pooled, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, pooled, out, **_) -> MatchResult:
        result = MatchResult()
        pool = pooled.producer()
        if pool is None or pool.op_type != "MaxPool" or pool.domain or pooled is not pool.outputs[0]:
            return result.fail("")  # not this form: nothing to explain here
        self._window, self._src = pool_window(pool, 3), _unsqueezed_form(pool)  # the Squeeze: this one
        if self._window is None or self._src is None or not pool_indices_unused(pool):
            return result.fail("")
        if not in_main_graph(context):
            return result.fail("")
        self.replaced(pooled, *out.producer().inputs[1:])  # the pool, its Unsqueeze, their axes
        return result

    def rewrite(self, op, pooled, out, **_):
        return _two_pools(op, self._src, *self._window)


@register
class MaxPool3dTo2d(WiresThrough):
    """MaxPool3d applied to a 4-D tensor (LPRNet) becomes two MaxPool2d with Transposes.

    torch exports nn.MaxPool3d on an unbatched 4-D tensor as a MaxPool with a 3-D kernel on a 4-D input,
    which is not valid ONNX (ONNX Runtime refuses to load it); the dynamo exporter wraps a 5-D MaxPool in
    Unsqueeze/Squeeze, which TensorRT and Sophon's toolchain reject. A 3-D max is separable: pool H and W
    first, then the channel axis, moved into a spatial slot by a Transpose."""

    name = "maxpool3d-to-2d"
    needs_shapes = True
    rules = (MaxPool3dOn4d, MaxPool3dUnsqueezed)

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type == "MaxPool" for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        while found := super().rewrite(model):  # shapes after an invalid pool are known once it is fixed
            count += found
            ensure_shapes(model)
        return count
