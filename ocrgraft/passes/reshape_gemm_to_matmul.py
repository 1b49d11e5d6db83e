"""reshape-gemm-to-matmul, as a rewrite rule.

Pattern:  y = Reshape(Gemm(Reshape(x, flat), W, C), restore)   (torch: view(T*b, h), Linear, view(T, b, -1))
Rewrite:  y = MatMul(x, W) + C                                  (MatMul broadcasts over the leading dims)
Why:      both Reshape targets are Shape/Gather/Mul/Concat chains computed at run time; ATC's shape
          ranges (and the Ascend seed's fix.py `fix_gemm`) need them gone. Only when the second Reshape
          provably gives back x's leading dims, so the rewrite holds at any batch and width.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.passes._edit import const_array, dims, is_shape_dim, shape_elements
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass


class ReshapeGemmReshape(Rule):
    def pattern(self, op, x, flat, w, restore):
        gemm = op.Gemm(
            op.Reshape(x, flat, _allow_other_attributes=True),
            w,
            _allow_other_inputs=True,
            _allow_other_attributes=True,
            _outputs=["gemm_out"],
        )
        return op.Reshape(gemm, restore, _allow_other_attributes=True)

    def check(self, context, x, flat, w, restore, gemm_out, **_) -> MatchResult:
        result = MatchResult()
        gemm = gemm_out.producer()
        if gemm.attributes.get_int("transA", 0):
            return result.fail("the Gemm transposes its first input (transA)")
        weight = const_array(w)
        if weight is None or weight.ndim != 2:
            return result.fail(f"the Gemm's weight '{w.name}' is not a constant matrix")
        weight = weight.T if gemm.attributes.get_int("transB", 0) else weight
        k, n = weight.shape
        shape, target = dims(x), shape_elements(flat)
        if target is None and dims(flat) is not None:
            target = [None] * (dims(flat)[0] or 0)
        if shape is None or len(shape) < 2 or shape[-1] != k or target is None or len(target) != 2:
            return result.fail(
                f"the first Reshape does not flatten the leading dims of '{x.name}' to [*, {k}]"
            )
        restored = shape_elements(restore)
        if restored is None or len(restored) != len(shape) or restored.count(-1) > 1:
            return result.fail("the second Reshape's target cannot be read as x's leading dims and N")
        for axis, element in enumerate(restored[:-1]):
            if element != -1 and not is_shape_dim(element, x, axis):
                return result.fail(f"the second Reshape does not give back dim {axis} of '{x.name}'")
        last = restored[-1]
        if last not in (-1, n) and not (
            isinstance(last, tuple) and dims(last[1]) is not None and dims(last[1])[last[2]] == n
        ):
            return result.fail(f"the second Reshape's last dim is not the Gemm's {n} outputs")
        alpha, beta = gemm.attributes.get_float("alpha", 1.0), gemm.attributes.get_float("beta", 1.0)
        weight = (weight * alpha).astype(weight.dtype) if alpha != 1.0 else weight
        bias = None
        if len(gemm.inputs) > 2 and gemm.inputs[2] is not None:
            c = const_array(gemm.inputs[2])
            if c is None or c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1):
                return result.fail("the Gemm's bias is not a constant of one value or one per output")
            bias = (c.reshape(-1) * beta).astype(c.dtype)
        self._weights = (np.ascontiguousarray(weight), bias)
        self.replaced(flat, w, restore, *gemm.inputs[2:])
        return result

    def rewrite(self, op, x, w, gemm_out, **_):
        weight, bias = self._weights
        out = op.MatMul(x, op.initializer(ir.Tensor(weight, name=f"{w.name}.matmul"), f"{w.name}.matmul"))
        if bias is None:
            return out
        name = f"{w.name}.matmul_bias"
        return op.Add(out, op.initializer(ir.Tensor(bias, name=name), name))


@register
class ReshapeGemmToMatMul(RulePass):
    """Reshape -> Gemm -> Reshape (view -> Linear -> view) becomes MatMul + Add on the unflattened tensor.

    torch exports `view(T*b, h) -> nn.Linear -> view(T, b, -1)` with both reshape targets computed from
    Shape/Gather/Mul/Concat chains at run time. MatMul broadcasts over the leading dims, so when the
    second Reshape provably restores them the reshapes and their shape chains go, at any batch and width."""

    name = "reshape-gemm-to-matmul"
    rules = (ReshapeGemmReshape,)
    needs_shapes = refresh_shapes = True
