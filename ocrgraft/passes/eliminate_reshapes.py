"""eliminate-reshapes: reshape round trips removed, as onnxsim / onnxslim do, but exact, pattern-matched and
verified like every other generic pass, and never fixing a dynamic dimension."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.passes._edit import (
    Editor,
    const_array,
    dims,
    ensure_shapes,
    remove_unused,
    same_dim,
    shape_elements,
)
from ocrgraft.passes.base import Pass, register


@register
class EliminateReshapes(Pass):
    """Remove reshape round trips: a Reshape of a Reshape reads the first input, a Reshape to its input's
    own shape goes.

    Exporters turn `x.view(n, c, -1) ... .view(x.shape)` into Reshape(Reshape(x, Concat(Shape(x)[0], c, -1)),
    Shape(x)). A Reshape whose target has no 0 (copy) entry ignores its input's shape, so it may read the
    inner Reshape's input; a Reshape whose target is, element by element, its input's own dims (proven from
    Shape/Gather/Concat chains or static dims, at most one -1) is the identity. Holds for non-empty
    tensors."""

    name = "eliminate-reshapes"

    def rewrite(self, model: ir.Model) -> int:
        # Two sweeps rather than `needs_shapes`: the usual round trips need no shapes, and inferring
        # them on a large export costs more than the sweep; only what is left waits for inference.
        count = self._sweep(model, shapes=False)
        if not any(_is_reshape(n) for n in model.graph):
            return count
        restore = ensure_shapes(model)
        found = self._sweep(model, shapes=True)
        if not (count or found):
            restore()
        return count + found

    def _sweep(self, model: ir.Model, shapes: bool) -> int:
        edit, count, dead = Editor(model, self.name), 0, []
        for node in list(model.graph):  # in order, so an inner Reshape is already simplified
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
    return (
        node is not None
        and node.op_type == "Reshape"
        and node.domain in ("", "ai.onnx")
        and len(node.inputs) == 2
    )


def _never_copies(reshape: ir.Node) -> bool:
    """Whether the Reshape's output shape ignores its input's dims: no target element can be a 0 that
    copies one."""
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
    if (
        node.op_type in ("Gather", "Slice", "Unsqueeze", "Squeeze", "Reshape", "Identity")
        or node.op_type == "Cast"
        and node.attributes.get_int("to") == ir.DataType.INT64
    ):
        return _no_zeros(node.inputs[0])  # picks or regroups elements, or keeps them int64
    return node.op_type == "Concat" and all(_no_zeros(v) for v in node.inputs)


def _is_own_shape(reshape: ir.Node, shapes: bool) -> bool:
    """Whether the Reshape provably returns its input's own shape: the target is Shape(input), or (with fresh
    shapes) each element is the input's dim there (a number, a dim read with Shape, or a 0 copying it), with
    at most one -1."""
    x, target = reshape.inputs
    source = target.producer()
    if (
        source is not None
        and source.op_type == "Shape"
        and source.domain in ("", "ai.onnx")
        and source.inputs[0] is x
        and source.attributes.get_int("start", 0) == 0
        and source.attributes.get_int("end") is None
    ):
        return True
    if not shapes:
        return False
    elements, shape = shape_elements(target), dims(x)
    if elements is None or shape is None or len(elements) != len(shape):
        return False
    copies = not reshape.attributes.get_int("allowzero", 0)
    unproven = 0
    for axis, e in enumerate(elements):
        if (
            (e == 0 and copies)
            or (isinstance(e, int) and e >= 0 and shape[axis] == e)
            or (isinstance(e, tuple) and same_dim(e[1], e[2], x, axis))
        ):
            continue
        if e != -1:
            return False
        unproven += 1
    return unproven <= 1
