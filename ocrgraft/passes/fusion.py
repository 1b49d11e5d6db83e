"""Generic simplifications exporters leave to a simplifier: per-channel affine ops after a Conv, reshape round trips.

Both are what onnxsim / onnxslim do on every model; here they are exact, pattern-matched and verified like
every other generic pass, and never fix a dynamic dimension.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.passes._edit import (
    Editor,
    axes_of,
    const_array,
    dims,
    ensure_shapes,
    only_use,
    remove_unused,
    remove_unused_values,
    same_dim,
    shape_elements,
)
from ocrgraft.passes.base import Pass, register

_FLOATS = (np.float32, np.float64)
_ONNX = ("", "ai.onnx")


@register
class FuseConvAffine(Pass):
    """Fold an inference BatchNormalization, or a Mul / Add by a per-channel constant, into the Conv before it.

    Each is y = Conv(x, W, B) * s + t per output channel (BatchNormalization: s = scale / sqrt(var + eps),
    t = bias - mean * s), which is Conv(x, W * s, B * s + t): one node less, and a scale ONNX Runtime would
    otherwise apply as a separate pass over the output. Computed in float64, stored as float32/float64."""

    name = "fuse-conv-affine"

    def rewrite(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):   # in order: Conv -> Mul -> Add folds one op after the other
            match = _affine_after_conv(node)
            if match is None:
                continue
            conv, weight, bias, scale, shift = match
            factor = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
            conv.resize_inputs(3)
            old = [_set_input(edit, conv, 1, (weight.astype(np.float64) * factor).astype(weight.dtype), "weight"),
                   _set_input(edit, conv, 2, (bias.astype(np.float64) * scale + shift).astype(weight.dtype), "bias")]
            conv.doc_string = conv.doc_string or f"ocrgraft:{self.name}"
            edit.at(node).replace(node.outputs[0], conv.outputs[0])
            remove_unused(model.graph, [node])
            remove_unused_values(model.graph, [v for v in old if v is not None])
            count += 1
        return count


def _set_input(edit: Editor, node: ir.Node, index: int, array: np.ndarray, hint: str) -> ir.Value | None:
    """Make input `index` of `node` the constant `array`: in place when only this node reads that initializer
    (it keeps its name), else as a new one; returns the value it no longer reads, if any."""
    value = node.inputs[index]
    if value is not None and value.is_initializer() and not value.is_graph_input() and only_use(value) is node \
            and value.const_value is not None and value.const_value.shape == array.shape:
        value.const_value = ir.Tensor(array, name=value.name)
        return None
    node.replace_input_with(index, edit.const(array, hint))
    return value


def _affine_after_conv(node: ir.Node):
    """(conv, W, B, s, t) when `node` is an affine op on a Conv output it alone reads, else None."""
    if node.domain not in _ONNX or node.op_type not in ("BatchNormalization", "Mul", "Add"):
        return None
    reads = node.inputs[:1] if node.op_type == "BatchNormalization" else node.inputs[:2]
    conv = next((v.producer() for v in reads if v is not None and v.producer() is not None
                 and v.producer().op_type == "Conv" and v.producer().domain in _ONNX), None)
    if conv is None or conv.graph is not node.graph or only_use(conv.outputs[0]) is not node:
        return None
    weight = const_array(conv.inputs[1])
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = const_array(conv.inputs[2]) if has_bias else None
    if weight is None or weight.dtype.type not in _FLOATS or weight.ndim < 3 or has_bias and bias is None:
        return None
    channels = weight.shape[0]
    bias = np.zeros(channels) if bias is None else bias.reshape(-1)
    if node.op_type == "BatchNormalization":
        params = [_constant(v) for v in node.inputs[1:]]
        if len(params) != 4 or any(p is None or p.size != channels for p in params) \
                or node.attributes.get_int("training_mode", 0) or node.attributes.get_int("spatial", 1) != 1 \
                or any(v.uses() or v.is_graph_output() for v in node.outputs[1:]):
            return None
        gamma, beta, mean, var = (p.reshape(-1).astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + node.attributes.get_float("epsilon", 1e-5))
        return conv, weight, bias, scale, beta - mean * scale
    other = node.inputs[1] if node.inputs[0] is conv.outputs[0] else node.inputs[0]
    values = _per_channel(_constant(other), channels, weight.ndim, weight.dtype)
    if values is None:
        return None
    if node.op_type == "Mul":
        return conv, weight, bias, values, np.zeros(channels)
    return conv, weight, bias, np.ones(channels), values


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
    except (ValueError, IndexError, np.exceptions.AxisError):   # not a valid reshape: leave it to ONNX Runtime
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


@register
class EliminateReshapes(Pass):
    """Remove reshape round trips: a Reshape of a Reshape reads the first input, a Reshape to its input's own shape goes.

    Exporters turn `x.view(n, c, -1) ... .view(x.shape)` into Reshape(Reshape(x, Concat(Shape(x)[0], c, -1)),
    Shape(x)). A Reshape whose target has no 0 (copy) entry ignores its input's shape, so it may read the
    inner Reshape's input; a Reshape whose target is, element by element, its input's own dims (proven from
    Shape/Gather/Concat chains or static dims, at most one -1) is the identity. Holds for non-empty tensors."""

    name = "eliminate-reshapes"

    def rewrite(self, model: ir.Model) -> int:
        count = self._sweep(model, shapes=False)   # the usual round trips need no shapes: no inference
        if not any(_is_reshape(n) for n in model.graph):
            return count
        restore = ensure_shapes(model)
        found = self._sweep(model, shapes=True)
        if not (count or found):
            restore()
        return count + found

    def _sweep(self, model: ir.Model, shapes: bool) -> int:
        edit, count, dead = Editor(model, self.name), 0, []
        for node in list(model.graph):   # in order, so an inner Reshape is already simplified
            if not _is_reshape(node):
                continue
            inner = node.inputs[0].producer()
            if _is_reshape(inner) and _never_copies(node):
                node.replace_input_with(0, inner.inputs[0])
                dead.append(inner)
                count += 1
            if _is_own_shape(node, shapes):
                edit.at(node).replace(node.outputs[0], node.inputs[0])
                dead.append(node)
                count += 1
        remove_unused(model.graph, dead)
        return count


def _is_reshape(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Reshape" and node.domain in ("", "ai.onnx") and len(node.inputs) == 2


def _never_copies(reshape: ir.Node) -> bool:
    """Whether the Reshape's output shape ignores its input's dims: no target element can be a 0 that copies one."""
    return bool(reshape.attributes.get_int("allowzero", 0)) or _no_zeros(reshape.inputs[1])


def _no_zeros(value: ir.Value) -> bool:
    """Whether every element is a number other than 0 or a dim read with Shape (0 only for an empty tensor);
    needs no shapes, so it holds along a chain of views that inference could not follow."""
    array = const_array(value)
    if array is not None:
        return array.dtype.kind in "iu" and bool(np.all(array != 0))
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Shape":
        return True
    if node.op_type in ("Gather", "Slice", "Unsqueeze", "Squeeze", "Reshape", "Identity") \
            or node.op_type == "Cast" and node.attributes.get_int("to") == ir.DataType.INT64:
        return _no_zeros(node.inputs[0])   # picks or regroups elements, or keeps them int64
    return node.op_type == "Concat" and all(_no_zeros(v) for v in node.inputs)


def _is_own_shape(reshape: ir.Node, shapes: bool) -> bool:
    """Whether the Reshape provably returns its input's own shape: the target is Shape(input), or (with fresh
    shapes) each element is the input's dim there (a number, a dim read with Shape, or a 0 copying it), with
    at most one -1."""
    x, target = reshape.inputs
    source = target.producer()
    if source is not None and source.op_type == "Shape" and source.domain in ("", "ai.onnx") and source.inputs[0] is x \
            and source.attributes.get_int("start", 0) == 0 and source.attributes.get_int("end") is None:
        return True
    if not shapes:
        return False
    elements, shape = shape_elements(target), dims(x)
    if elements is None or shape is None or len(elements) != len(shape):
        return False
    copies = not reshape.attributes.get_int("allowzero", 0)
    unproven = 0
    for axis, e in enumerate(elements):
        if (e == 0 and copies) or (isinstance(e, int) and e >= 0 and shape[axis] == e) \
                or (isinstance(e, tuple) and same_dim(e[1], e[2], x, axis)):
            continue
        if e != -1:
            return False
        unproven += 1
    return unproven <= 1


_UNIT_REDUCTIONS = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")


@register
class EliminateUnitReductions(Pass):
    """Remove reductions over axes of size 1: they are the identity (keepdims) or a Squeeze.

    AdaptiveAvgPool2d((None, 1)) over a map already 1 high (the DTRB recognizer at height 32) exports as a
    ReduceMean over a static axis of 1. Mean, sum, max, min and product of one element are that element."""

    name = "eliminate-unit-reductions"

    def rewrite(self, model: ir.Model) -> int:
        if not any(n.op_type in _UNIT_REDUCTIONS for n in model.graph):
            return 0
        restore = ensure_shapes(model)
        edit, count, dead = Editor(model, self.name), 0, []
        for node in list(model.graph):
            axes = _unit_axes(node)
            if axes is None:
                continue
            edit.at(node)
            x = node.inputs[0]
            edit.replace(node.outputs[0], x if node.attributes.get_int("keepdims", 1) else edit.squeeze(x, axes))
            dead.append(node)
            count += 1
        remove_unused(model.graph, dead)
        if not count:
            restore()
        return count


def _unit_axes(node: ir.Node) -> list[int] | None:
    """The reduced axes (non-negative) if the node is a reduction over static axes of size 1 only."""
    if node.op_type not in _UNIT_REDUCTIONS or node.domain not in _ONNX:
        return None
    shape = dims(node.inputs[0])
    axes = axes_of(node)
    if shape is None or axes is None or not axes:   # no axes: all of them, or none (noop_with_empty_axes)
        return None
    axes = sorted(a % len(shape) for a in axes)
    return axes if all(shape[a] == 1 for a in axes) else None
