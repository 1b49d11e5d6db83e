"""split-pool: pool kernels above a target's size limit (Ascend: 255) split into a chain of smaller pools."""

from __future__ import annotations

import math

import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.passes._edit import (
    POOLS,
    Editor,
    ints,
    log,
    pool_indices_unused,
    pool_window,
    remove_unused,
)
from ocrgraft.passes.base import Pass, register


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
    """AveragePool/MaxPool kernels larger than a target's limit (Ascend: 255 elements) become a chain of
    smaller pools.

    ATC falls back to slow TransData/Transpose layouts for AvgPool kernels above 255 elements (Ascend
    auto-optimizer, KnowledgeAvgPoolSplit). Without padding, a window of f*g elements with stride s (f
    dividing s) is an f-pool of stride f followed by a g-pool of stride s/f, for averages and maxima alike.
    Pools that cannot be split (padding, ceil_mode, dilation, a large prime window) are left and logged."""

    name = "split-pool"

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
            if node.op_type not in POOLS or node.domain or not pool_indices_unused(node):
                continue
            kernel = ints(node, "kernel_shape")
            if kernel is None or math.prod(kernel) <= self.max_kernel:
                continue
            win = pool_window(node, len(kernel))
            plan = None
            if win is not None and not any(win[2]) and all(d == 1 for d in win[3]) and not win[4]:
                plan = split_plan(kernel, win[1], self.max_kernel)
            if plan is None:
                log.warning(
                    "split-pool: cannot split %s %s with kernel %s (padding, ceil_mode, dilation or a "
                    "prime window); left as is",
                    node.op_type,
                    node.name,
                    kernel,
                )
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
