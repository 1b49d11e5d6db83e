"""split-pool: pool kernels above a target's size limit (Ascend: 255) split into a chain of smaller pools,
as rewrite rules.

Pattern:  y = AveragePool(x)  or  MaxPool(x)    kernel above the limit; no pads, dilation or ceil_mode
Rewrite:  y = Pool_k2(Pool_k1(x))                each stage within the limit (split_plan)
Why:      ATC falls back to slow layouts for AvgPool kernels above 255 elements.
"""

from __future__ import annotations

import math
from typing import ClassVar

import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.passes._edit import POOLS, ints, log
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import PoolRule, RulePass


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


class _SplitPool(PoolRule):
    """One pool op type under one size limit; SplitPool makes the rules for its `max_kernel`."""

    limit: ClassVar[int]

    def check(self, context, x, pooled, **_) -> MatchResult:
        result = MatchResult()
        node = pooled.producer()
        kernel = ints(node, "kernel_shape")
        if kernel is None or math.prod(kernel) <= self.limit:
            return self.done(result)  # within the limit: nothing to split
        win, why = self.window(node, len(kernel))
        if win is None:
            pass
        elif any(win[2]) or win[4]:
            why = f"it pads its input (pads {win[2]}, ceil_mode {win[4]}), which a chain of pools changes"
        elif any(d != 1 for d in win[3]):
            why = f"it is dilated (dilations {win[3]})"
        else:
            self._plan = split_plan(kernel, win[1], self.limit)
            if self._plan is None:
                why = f"its window {kernel} (strides {win[1]}) has no factors that fit {self.limit} elements"
        if why:  # a pool past the target's limit that stays is worth a warning without --explain too
            log.warning(
                "split-pool: %s %s with kernel %s is left as is: %s", node.op_type, node.name, kernel, why
            )
            return result.fail(f"its kernel {kernel} exceeds {self.limit} elements, but {why}")
        return result

    def rewrite(self, op, x, pooled, **_):
        node, y = pooled.producer(), x
        for k, s in self._plan:
            attrs = {"kernel_shape": k, "strides": s}
            if self.op_type == "AveragePool" and "count_include_pad" in node.attributes:
                attrs["count_include_pad"] = node.attributes.get_int("count_include_pad")
            y = getattr(op, self.op_type)(y, **attrs)
        return y


@register
class SplitPool(RulePass):
    """AveragePool/MaxPool kernels larger than a target's limit (Ascend: 255 elements) become a chain of
    smaller pools.

    ATC falls back to slow TransData/Transpose layouts for AvgPool kernels above 255 elements (Ascend
    auto-optimizer, KnowledgeAvgPoolSplit). Without padding, a window of f*g elements with stride s (f
    dividing s) is an f-pool of stride f followed by a g-pool of stride s/f, for averages and maxima alike.
    Pools that cannot be split (padding, ceil_mode, dilation, a large prime window) are left, logged and
    explained."""

    name = "split-pool"

    def __init__(self, max_kernel: int | str = 255):
        super().__init__()
        if not str(max_kernel).isdigit() or int(max_kernel) < 2:
            raise OcrgraftError(f"split-pool: max_kernel={max_kernel} is not an integer >= 2")
        self.max_kernel = int(max_kernel)
        self.rules = tuple(
            type(f"Split{op}", (_SplitPool,), {"op_type": op, "limit": self.max_kernel}) for op in POOLS
        )

    def args(self) -> dict[str, str]:
        return {"max_kernel": str(self.max_kernel)}

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in POOLS for n in model.graph)
