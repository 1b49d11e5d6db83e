"""topk-int32: TopK's K as an INT32 constant, the form Ascend ATC takes, as a rewrite rule.

Pattern:  values, indices = TopK(x, K)        K an INT64 constant (what ONNX requires)
Rewrite:  values, indices = TopK(x, int32(K))
Why:      Huawei's auto-optimizer notes that ATC may fail on TopK's INT64 K. The result is not valid
          ONNX, so the pass is 'legalize': ONNX Runtime does not check it. A K computed at run time,
          or one outside INT32, is left as it is and the reason given (--explain).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.passes._edit import const_array
from ocrgraft.passes.base import LEGALIZE, register
from ocrgraft.passes.rules import Rule, RulePass


class TopKInt64K(Rule):
    def pattern(self, op, x, k):
        return op.TopK(x, k, _allow_other_attributes=True, _outputs=["values", "indices"])

    def check(self, context, x, k, values, **_) -> MatchResult:
        result = MatchResult()
        array = const_array(k)
        if array is None:
            return result.fail(f"its K '{k.name}' is computed at run time, so it stays INT64")
        if array.dtype == np.int32:
            return self.done(result)
        if not np.all((array >= 0) & (array <= np.iinfo(np.int32).max)):
            return result.fail(f"its K {array.tolist()} does not fit INT32")
        self._k = array.astype(np.int32)
        self.replaced(k)
        return result

    def rewrite(self, op, x, k, values, **_):
        name = f"{k.name}.int32"
        k32 = op.initializer(ir.Tensor(self._k, name=name), name)
        return op.TopK(x, k32, _outputs=2, **values.producer().attributes)


@register
class TopKInt32(RulePass):
    """TopK's K becomes an INT32 constant, the form Ascend ATC takes (ONNX itself requires INT64).

    Huawei's auto-optimizer notes that ATC may fail on TopK's INT64 K. The result is not valid ONNX,
    so it is not checked in ONNX Runtime; a K that is computed at run time is left alone and named."""

    name = "topk-int32"
    semantics = LEGALIZE
    rules = (TopKInt64K,)
