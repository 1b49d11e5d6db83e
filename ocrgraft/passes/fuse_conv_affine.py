"""fuse-conv-affine: per-channel affine ops after a Conv folded into its weights, as rewrite rules.

Pattern:  y = BatchNormalization(Conv(x, W, B), gamma, beta, mean, var)   (inference form)
          y = Mul(Conv(x, W, B), s)  or  Add(Conv(x, W, B), t)          (s, t per output channel)
Rewrite:  y = Conv(x, W * s, B * s + t)
          (BatchNormalization: s = gamma / sqrt(var + eps), t = beta - mean * s)
Why:      one node less, and a scale ONNX Runtime, TensorRT and ATC would otherwise apply as a separate
          pass over the output; what onnxsim / onnxslim do on every model, here exact and explained.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.passes._edit import axes_of, const_array
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass

_FLOATS = (np.float32, np.float64)
_ONNX = ("", "ai.onnx")


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """A constant, also through the Reshape / Unsqueeze exporters put on one (a bias viewed as [1, C, 1, 1]),
    which fold-constants would only fold later in the pipeline."""
    array = const_array(value)
    node = value.producer() if array is None and value is not None else None
    if node is None or node.domain not in _ONNX or node.op_type not in ("Reshape", "Unsqueeze"):
        return array
    data = _constant(node.inputs[0])
    if data is None:
        return None
    try:
        if node.op_type == "Unsqueeze":
            axes = axes_of(node)
            return None if axes is None else np.expand_dims(data, tuple(axes))
        target = const_array(node.inputs[1])
        if target is None or (0 in target and node.attributes.get_int("allowzero", 0)):
            return None
        return data.reshape([data.shape[i] if t == 0 else int(t) for i, t in enumerate(target.reshape(-1))])
    except (ValueError, IndexError, np.exceptions.AxisError):  # not a valid reshape: leave it to ONNX Runtime
        return None


def _per_channel(array: np.ndarray | None, channels: int, rank: int, dtype) -> np.ndarray | None:
    """The constant as one number per output channel, if broadcasting it over a Conv output [N, C, ...]
    reads only the channel: a single number, or C numbers along axis 1 ([C, 1, 1], [1, C, 1, 1])."""
    if array is None or array.dtype != dtype or array.ndim > rank:
        return None
    if array.size == 1:
        return np.full(channels, float(array.reshape(-1)[0]))
    shape = (1,) * (rank - array.ndim) + array.shape
    if shape[1] != channels or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return array.reshape(-1).astype(np.float64)


def _conv(op, x):
    return op.Conv(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["conv_out"])


class _AfterConv(Rule):
    """The check computes the fused weights (a failed condition says which, in words); the rewrite,
    which follows a successful check at once, writes them."""

    def scale_shift(self, node: ir.Node, channels: int, rank: int, dtype, **bindings):
        """(s, t) per output channel for the affine op `node`, or why not (a string)."""
        raise NotImplementedError

    def check(self, context, x, conv_out, **bindings) -> MatchResult:
        result = MatchResult()
        conv = conv_out.producer()
        weight = const_array(conv.inputs[1])
        has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
        bias = const_array(conv.inputs[2]) if has_bias else None
        if weight is None:
            return result.fail(f"the Conv's weight '{conv.inputs[1].name}' is not a constant")
        if weight.dtype.type not in _FLOATS or weight.ndim < 3:
            return result.fail(
                f"the Conv's weight is {weight.dtype} of rank {weight.ndim}, not float of rank >= 3"
            )
        if has_bias and bias is None:
            return result.fail(f"the Conv's bias '{conv.inputs[2].name}' is not a constant")
        node = next(iter(u.node for u in conv_out.uses()))
        affine = self.scale_shift(node, weight.shape[0], weight.ndim, weight.dtype, **bindings)
        if isinstance(affine, str):
            return result.fail(affine)
        scale, shift = affine
        bias = np.zeros(weight.shape[0]) if bias is None else bias.reshape(-1)
        factor = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
        self._fused = (
            (weight.astype(np.float64) * factor).astype(weight.dtype),
            (bias.astype(np.float64) * scale + shift).astype(weight.dtype),
        )
        self.replaced(*conv.inputs[1:], *bindings.values())
        return result

    def rewrite(self, op, x, conv_out, **_):
        conv = conv_out.producer()
        weight, bias = self._fused
        name = conv.inputs[1].name
        w = op.initializer(ir.Tensor(weight, name=f"{name}.fused"), f"{name}.fused")
        b = op.initializer(ir.Tensor(bias, name=f"{name}.fused_bias"), f"{name}.fused_bias")
        return op.Conv(x, w, b, **conv.attributes)


class BatchNormAfterConv(_AfterConv):
    def pattern(self, op, x, gamma, beta, mean, var):
        return op.BatchNormalization(_conv(op, x), gamma, beta, mean, var, _allow_other_attributes=True)

    def scale_shift(self, node, channels, rank, dtype, gamma, beta, mean, var, **_):
        given = (gamma, beta, mean, var)
        params = [_constant(v) for v in given]
        missing = [v.name for v, p in zip(given, params) if p is None]
        if missing:
            return f"its parameter(s) {', '.join(missing)} are not constants"
        if any(p.size != channels for p in params):
            return f"its parameters do not have one value per Conv output channel ({channels})"
        if node.attributes.get_int("training_mode", 0) or node.attributes.get_int("spatial", 1) != 1:
            return "it is in training mode (or not spatial)"
        gamma, beta, mean, var = (p.reshape(-1).astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + node.attributes.get_float("epsilon", 1e-5))
        return scale, beta - mean * scale


class MulAfterConv(_AfterConv):
    def pattern(self, op, x, s):
        return op.Mul(_conv(op, x), s)

    def scale_shift(self, node, channels, rank, dtype, s, **_):
        values = _per_channel(_constant(s), channels, rank, dtype)
        if values is None:
            return f"the factor '{s.name}' is not a constant with one value per output channel"
        return values, np.zeros(channels)


class AddAfterConv(_AfterConv):
    def pattern(self, op, x, t):
        return op.Add(_conv(op, x), t)

    def scale_shift(self, node, channels, rank, dtype, t, **_):
        values = _per_channel(_constant(t), channels, rank, dtype)
        if values is None:
            return f"the term '{t.name}' is not a constant with one value per output channel"
        return np.ones(channels), values


@register
class FuseConvAffine(RulePass):
    """Fold an inference BatchNormalization, or a Mul / Add by a per-channel constant, into the Conv
    before it.

    Each is y = Conv(x, W, B) * s + t per output channel (BatchNormalization: s = scale / sqrt(var + eps),
    t = bias - mean * s), which is Conv(x, W * s, B * s + t): one node less, and a scale ONNX Runtime would
    otherwise apply as a separate pass over the output. Computed in float64, stored as float32/float64."""

    name = "fuse-conv-affine"
    rules = (BatchNormAfterConv, MulAfterConv, AddAfterConv)
    commute = True
