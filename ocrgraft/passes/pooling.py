"""Pooling rewrites: whole-axis pools to reductions, MaxPool3d on 4-D tensors to 2-D pools, and
kernels above a target's size limit split into a chain of smaller pools."""

from __future__ import annotations

import math

import onnx_ir as ir

from ocrgraft.errors import OcrgraftError
from ocrgraft.passes._edit import Editor, axes_of, dims, ensure_shapes, ints, log, only_use, remove_unused
from ocrgraft.passes.base import Pass, register

POOLS = ("AveragePool", "MaxPool")


def _window(node: ir.Node, n: int) -> tuple[list[int], list[int], list[int], list[int], int] | None:
    """kernel, strides, pads, dilations, ceil_mode of an n-D pool; None for auto_pad SAME_*."""
    kernel = ints(node, "kernel_shape")
    if kernel is None or len(kernel) != n:
        return None
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    pads = ints(node, "pads", [0] * 2 * n)
    if node.attributes.get_string("auto_pad", "NOTSET") == "VALID":
        pads = [0] * 2 * n
    return (kernel, ints(node, "strides", [1] * n), pads, ints(node, "dilations", [1] * n),
            node.attributes.get_int("ceil_mode", 0))


def _indices_unused(node: ir.Node) -> bool:
    return len(node.outputs) < 2 or not (node.outputs[1].uses() or node.outputs[1].is_graph_output())


@register
class PoolToReduce(Pass):
    """AveragePool/MaxPool windows that span whole static axes become ReduceMean/ReduceMax; 1x1 pools are removed.

    Exporters bake adaptive pooling into a kernel as large as the feature map (AdaptiveAvgPool2d((None, 1))
    in text recognizers). A reduction states what is meant and has no kernel-size limit (Ascend: 255
    elements). A pool whose window is a single element (DTRB's pool at image height 32) is an identity and
    is removed."""

    name = "pool-to-reduce"

    def rewrite(self, model: ir.Model) -> int:
        restore = ensure_shapes(model)
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):
            if node.op_type not in POOLS or node.domain or not _indices_unused(node):
                continue
            x, shape = node.inputs[0], dims(node.inputs[0])
            win = _window(node, len(shape) - 2) if shape and len(shape) > 2 else None
            if win is None:
                continue
            kernel, strides, pads, dilations, _ = win
            if any(pads) or any(d != 1 for d in dilations):
                continue
            axes, plain = [], True
            for axis, (k, s, size) in enumerate(zip(kernel, strides, shape[2:]), start=2):
                if k == 1 and (s == 1 or size == 1):
                    continue
                if size is not None and k == size:
                    axes.append(axis)
                else:
                    plain = False
            if not plain:
                continue
            edit.at(node)
            if axes:
                op = "ReduceMean" if node.op_type == "AveragePool" else "ReduceMax"
                edit.replace(node.outputs[0], edit.reduce(op, x, axes, keepdims=1))
            else:
                edit.replace(node.outputs[0], x)
            remove_unused(model.graph, [node])
            count += 1
        ensure_shapes(model) if count else restore()
        return count


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
    targets = ("trt", "sophon")

    def rewrite(self, model: ir.Model) -> int:
        restore = ensure_shapes(model)
        count = 0
        while found := self._rewrite_known(model):   # shapes after an invalid pool are known only once it is fixed
            count += found
            ensure_shapes(model)
        if not count:
            restore()
        return count

    def _rewrite_known(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):
            if node.op_type != "MaxPool" or node.domain or not _indices_unused(node):
                continue
            win = _window(node, 3)
            if win is None:
                continue
            x, out, drop = node.inputs[0], node.outputs[0], [node]
            if x.shape is not None and len(x.shape) == 4:
                pass                                   # the invalid 3-D kernel on a 4-D input
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
            y = edit.op("MaxPool", [y], {"kernel_shape": [kh, kw], "strides": [sh, sw], "pads": [ph0, pw0, ph1, pw1],
                                         "dilations": [dh, dw], "ceil_mode": ceil_mode})
        if (kd, sd, pd0, pd1) != (1, 1, 0, 0):
            t = edit.op("Transpose", [y], {"perm": [0, 3, 2, 1]})
            t = edit.op("MaxPool", [t], {"kernel_shape": [1, kd], "strides": [1, sd], "pads": [0, pd0, 0, pd1],
                                         "dilations": [1, dd], "ceil_mode": ceil_mode})
            y = edit.op("Transpose", [t], {"perm": [0, 3, 2, 1]})
        return y


def split_plan(kernel: list[int], strides: list[int], limit: int) -> list[tuple[list[int], list[int]]] | None:
    """Stages (kernel, strides) whose chain equals one pool with a window of at most `limit` elements each.

    Earlier stages take factors of gcd(kernel, stride) per axis with stride = kernel; the last stage takes
    the rest with the remaining stride. None when the last stage alone is still too large."""
    early = [math.gcd(k, s) for k, s in zip(kernel, strides)]
    last = [k // g for k, g in zip(kernel, early)]
    if math.prod(last) > limit:
        return None
    factors = sorted(((p, axis) for axis, g in enumerate(early) for p in _primes(g)), reverse=True)
    stages: list[list[int]] = []
    for p, axis in factors:
        if math.prod(last) * p <= limit:
            last[axis] *= p
            continue
        stage = next((s for s in stages if math.prod(s) * p <= limit), None)
        if stage is None:
            if p > limit:
                return None
            stage = [1] * len(kernel)
            stages.append(stage)
        stage[axis] *= p
    plan = [(s, list(s)) for s in stages]
    done = [math.prod(s[a] for s in stages) for a in range(len(kernel))]
    plan.append((last, [st // d for st, d in zip(strides, done)]))
    return plan


def _primes(n: int) -> list[int]:
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


@register
class SplitPool(Pass):
    """AveragePool/MaxPool kernels larger than a target's limit (Ascend: 255 elements) become a chain of smaller pools.

    ATC falls back to slow TransData/Transpose layouts for AvgPool kernels above 255 elements (Ascend
    auto-optimizer, KnowledgeAvgPoolSplit). Without padding, a window of f*g elements with stride s (f
    dividing s) is an f-pool of stride f followed by a g-pool of stride s/f, for averages and maxima alike.
    Pools that cannot be split (padding, ceil_mode, dilation, a large prime window) are left and logged."""

    name = "split-pool"
    targets = ("ascend",)

    def __init__(self, max_kernel: int | str = 255):
        super().__init__()
        if not str(max_kernel).isdigit() or int(max_kernel) < 2:
            raise OcrgraftError(f"split-pool: max_kernel={max_kernel} is not an integer >= 2")
        self.max_kernel = int(max_kernel)

    def args(self) -> dict[str, str]:
        return {"max_kernel": str(self.max_kernel)}

    def rewrite(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):
            if node.op_type not in POOLS or node.domain or not _indices_unused(node):
                continue
            kernel = ints(node, "kernel_shape")
            if kernel is None or math.prod(kernel) <= self.max_kernel:
                continue
            win = _window(node, len(kernel))
            plan = None
            if win is not None and not any(win[2]) and all(d == 1 for d in win[3]) and not win[4]:
                plan = split_plan(kernel, win[1], self.max_kernel)
            if plan is None:
                log.warning("split-pool: cannot split %s %s with kernel %s (padding, ceil_mode, dilation or a "
                            "prime window); left as is", node.op_type, node.name, kernel)
                continue
            edit.at(node)
            y = node.inputs[0]
            for k, s in plan:
                attrs = {"kernel_shape": k, "strides": s}
                if node.op_type == "AveragePool" and "count_include_pad" in node.attributes:
                    attrs["count_include_pad"] = node.attributes.get_int("count_include_pad")
                y = edit.op(node.op_type, [y], attrs)
            edit.replace(node.outputs[0], y)
            remove_unused(model.graph, [node])
            count += 1
        return count
