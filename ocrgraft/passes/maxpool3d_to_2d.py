"""maxpool3d-to-2d: MaxPool3d on a 4-D tensor (LPRNet) as two 2-D pools."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.passes._edit import (
    Editor,
    axes_of,
    ensure_shapes,
    only_use,
    pool_indices_unused,
    pool_window,
    remove_unused,
)
from ocrgraft.passes.base import Pass, register


def _unsqueezed_axis0(value: ir.Value) -> ir.Value | None:
    """The 4-D tensor that `value` is an Unsqueeze at axis 0 of, else None."""
    node = value.producer()
    if node is None or node.op_type != "Unsqueeze" or node.domain or axes_of(node) not in ([0], [-5]):
        return None
    src = node.inputs[0]
    return src if src.shape is not None and len(src.shape) == 4 else None


def _squeeze_axis0(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Squeeze" and not node.domain and axes_of(node) in ([0], [-5])


@register
class MaxPool3dTo2d(Pass):
    """MaxPool3d applied to a 4-D tensor (LPRNet) becomes two MaxPool2d with Transposes.

    torch exports nn.MaxPool3d on an unbatched 4-D tensor as a MaxPool with a 3-D kernel on a 4-D input,
    which is not valid ONNX (ONNX Runtime refuses to load it); the dynamo exporter wraps a 5-D MaxPool in
    Unsqueeze/Squeeze, which TensorRT and Sophon's toolchain reject. A 3-D max is separable: pool H and W
    first, then the channel axis, moved into a spatial slot by a Transpose."""

    name = "maxpool3d-to-2d"
    needs_shapes = True

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type == "MaxPool" for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        while found := self._rewrite_known(model):  # shapes after an invalid pool are known once it is fixed
            count += found
            ensure_shapes(model)
        return count

    def _rewrite_known(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):
            if node.op_type != "MaxPool" or node.domain or not pool_indices_unused(node):
                continue
            win = pool_window(node, 3)
            if win is None:
                continue
            x, out, drop = node.inputs[0], node.outputs[0], [node]
            if x.shape is not None and len(x.shape) == 4:
                pass  # the invalid 3-D kernel on a 4-D input
            elif (src := _unsqueezed_axis0(x)) is not None and _squeeze_axis0(only_use(out)):
                squeeze = only_use(out)
                x, out, drop = src, squeeze.outputs[0], [squeeze]
            else:
                continue
            edit.at(drop[0])
            edit.replace(out, self._two_pools(edit, x, *win))
            remove_unused(model.graph, drop)
            count += 1
        return count

    @staticmethod
    def _two_pools(edit: Editor, x: ir.Value, kernel, strides, pads, dilations, ceil_mode) -> ir.Value:
        (kd, kh, kw), (sd, sh, sw), (dd, dh, dw) = kernel, strides, dilations
        pd0, ph0, pw0, pd1, ph1, pw1 = pads
        y = x
        if (kh, kw, sh, sw, ph0, pw0, ph1, pw1) != (1, 1, 1, 1, 0, 0, 0, 0):
            y = edit.op(
                "MaxPool",
                [y],
                {
                    "kernel_shape": [kh, kw],
                    "strides": [sh, sw],
                    "pads": [ph0, pw0, ph1, pw1],
                    "dilations": [dh, dw],
                    "ceil_mode": ceil_mode,
                },
            )
        if (kd, sd, pd0, pd1) != (1, 1, 0, 0):
            t = edit.op("Transpose", [y], {"perm": [0, 3, 2, 1]})
            t = edit.op(
                "MaxPool",
                [t],
                {
                    "kernel_shape": [1, kd],
                    "strides": [1, sd],
                    "pads": [0, pd0, 0, pd1],
                    "dilations": [1, dd],
                    "ceil_mode": ceil_mode,
                },
            )
            y = edit.op("Transpose", [t], {"perm": [0, 3, 2, 1]})
        return y
