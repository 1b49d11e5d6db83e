"""eliminate-reshapes: reshape round trips removed, as onnxsim / onnxslim do, but exact, pattern-matched and
verified like every other generic pass, and never fixing a dynamic dimension.

Pattern:  y = Reshape(Reshape(x, s), t)      t has no 0 that would copy a dim of the inner Reshape's output
Rewrite:  y = Reshape(x, t)                  (the inner Reshape goes once nothing else reads it)
Pattern:  y = Reshape(x, t)                  t is, element by element, x's own shape (at most one -1)
Rewrite:  y = x
Why:      exporters turn `x.view(n, c, -1) ... .view(x.shape)` into
          Reshape(Reshape(x, Concat(Shape(x)[0], c, -1)), Shape(x)): both go, with their shape chains, at any
          batch and width. Holds for non-empty tensors.

A loop over the graph in order rather than rewrite rules: it runs on every model, exports of tens of
thousands of nodes among them, and one in-order sweep that sees an inner Reshape already simplified is
half the time of the rule matcher here (a rule version measured 0.89 s against 0.45 s at 48k nodes).
With --explain it gives the same reasons in words.
"""

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

_ONNX = ("", "ai.onnx")


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
        # them on a large export costs more than the sweep; only what is left waits for inference (and is
        # explained, if asked: the first sweep's refusals may still go in the second).
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
        explain = self.explain and shapes
        for node in list(model.graph):  # in order, so an inner Reshape is already simplified
            if not _is_reshape(node):
                continue
            inner, missed, chained = node.inputs[0].producer(), None, False
            if _is_reshape(inner):
                if _never_copies(node):
                    node.replace_input_with(0, inner.inputs[0])
                    dead.append(inner)
                    count, chained = count + 1, True
                else:
                    missed = (
                        f"its target '{node.inputs[1].name}' may hold a 0 that copies a dim of the Reshape "
                        f"'{inner.name or '?'}' it reads, so it cannot read '{inner.inputs[0].name}' instead"
                    )
            why = _why_not_own_shape(node, node.inputs[0], node.inputs[1], shapes)
            if why is None:
                edit.at(node).replace(node.outputs[0], node.inputs[0])
                dead.append(node)
                count += 1
            elif explain and not chained:  # a node that was rewritten has nothing left to explain
                self.misses += [f"Reshape at node '{node.name or '?'}': {m}" for m in (missed, why) if m]
        remove_unused(model.graph, dead)
        return count


def _is_reshape(node: ir.Node | None) -> bool:
    return node is not None and node.op_type == "Reshape" and node.domain in _ONNX and len(node.inputs) == 2


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
    if node is None or node.domain not in _ONNX:
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


def _why_not_own_shape(reshape: ir.Node, x: ir.Value, target: ir.Value, shapes: bool) -> str | None:
    """None when Reshape(x, target) provably returns x's own shape: the target is Shape(x), or (with fresh
    shapes) each element is x's dim there (a number, a dim read with Shape, or a 0 copying it), with at most
    one -1. Otherwise why not, in words: '' where there is nothing to explain (a reshape to another rank, a
    target that cannot be read element by element, no shapes yet)."""
    source = target.producer()
    if (
        source is not None
        and source.op_type == "Shape"
        and source.domain in _ONNX
        and source.inputs[0] is x
        and source.attributes.get_int("start", 0) == 0
        and source.attributes.get_int("end") is None
    ):
        return None
    if not shapes:
        return ""
    elements, shape = shape_elements(target), dims(x)
    if elements is None or shape is None or len(elements) != len(shape):
        return ""
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
            what = f"dim {e[2]} of '{e[1].name}'" if isinstance(e, tuple) else "unknown" if e is None else e
            return (
                f"element {axis} of its target ({what}) is not provably dim {axis} of its input "
                f"'{x.name}' ({x.shape[axis]})"
            )
        unproven += 1
    return None if unproven <= 1 else "its target has more than one -1"
