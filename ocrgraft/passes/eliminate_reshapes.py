"""eliminate-reshapes: reshape round trips removed, as onnxsim / onnxslim do, but exact, pattern-matched and
verified like every other generic pass, and never fixing a dynamic dimension; as rewrite rules.

Pattern:  y = Reshape(Reshape(x, s), t)      t has no 0 that would copy a dim of the inner Reshape's output
Rewrite:  y = Reshape(x, t)                  (the inner Reshape goes once nothing else reads it)
Pattern:  y = Reshape(x, t)                  t is, element by element, x's own shape (at most one -1)
Rewrite:  y = x
Why:      exporters turn `x.view(n, c, -1) ... .view(x.shape)` into
          Reshape(Reshape(x, Concat(Shape(x)[0], c, -1)), Shape(x)): both go, with their shape chains, at any
          batch and width. Holds for non-empty tensors. A first sweep needs no shapes (a target read with
          Shape, or numbers); only the Reshapes left wait for shape inference and a second sweep.

A rule returns new values, so `y = x` is written as an Identity marked for this pass; matches later in the
sweep look through it, and the sweep ends by letting its readers read x (a graph output keeps its name), as
a Reshape bypassed on the spot would have.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.passes._edit import (
    Editor,
    const_array,
    dims,
    ensure_shapes,
    remove_unused,
    same_dim,
    shape_elements,
)
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass

_ONNX = ("", "ai.onnx")
_BYPASS = "ocrgraft.eliminate-reshapes.bypass"  # on an Identity a rule wrote: the rewrites it stands for


class _ReshapeRule(Rule):
    """A rule rooted at a Reshape of the main graph (If / Loop bodies are left alone)."""

    shapes: ClassVar[bool] = False  # the second sweep's rules also read value shapes, inferred afresh

    def __init__(self, orphans: list[ir.Value] | None = None):
        super().__init__(orphans)
        self.name = type(self).__name__.removesuffix("WithShapes")

    def pattern(self, op, data, target):
        return op.Reshape(data, target, _allow_other_attributes=True)


class ReshapeOfReshape(_ReshapeRule):
    def check(self, context, data, target, **_) -> MatchResult:
        result = MatchResult()
        node = context.root
        inner = _behind(data).producer()
        if node.graph is not context.model.graph or not _is_reshape(inner):
            return self.done(result)  # reads no Reshape: the form this rule leaves
        source, target = _behind(inner.inputs[0]), _behind(target)
        if not _never_copies(node):
            return result.fail(
                f"its target '{target.name}' may hold a 0 that copies a dim of the Reshape "
                f"'{inner.name or '?'}' it reads, so it cannot read '{source.name}' instead"
            )
        own = _why_not_own_shape(node, source, target, self.shapes) is None  # then it goes as well
        self._plan = (node, source, target, own)
        self.replaced(data, target)
        return result

    def rewrite(self, op, **_):
        node, source, target, own = self._plan
        if own:
            return _identity(op, source, rewrites=2)
        out = op.Reshape(source, target, **node.attributes)
        new = out.producer()  # the same node, reading x: it keeps its name
        new.name, new.doc_string = node.name, node.doc_string
        new.metadata_props.update(node.metadata_props)
        return out


class ReshapeToOwnShape(_ReshapeRule):
    def check(self, context, data, target, **_) -> MatchResult:
        result = MatchResult()
        node, x = context.root, _behind(data)
        if node.graph is not context.model.graph:
            return self.done(result)
        why = _why_not_own_shape(node, x, _behind(target), self.shapes)
        if why is not None:
            return result.fail(why) if why else self.done(result)
        self._x = x
        self.replaced(data, target)
        return result

    def rewrite(self, op, **_):
        return _identity(op, self._x, rewrites=1)


class ReshapeOfReshapeWithShapes(ReshapeOfReshape):
    shapes = True


class ReshapeToOwnShapeWithShapes(ReshapeToOwnShape):
    shapes = True


@register
class EliminateReshapes(RulePass):
    """Remove reshape round trips: a Reshape of a Reshape reads the first input, a Reshape to its input's
    own shape goes.

    Exporters turn `x.view(n, c, -1) ... .view(x.shape)` into Reshape(Reshape(x, Concat(Shape(x)[0], c, -1)),
    Shape(x)). A Reshape whose target has no 0 (copy) entry ignores its input's shape, so it may read the
    inner Reshape's input; a Reshape whose target is, element by element, its input's own dims (proven from
    Shape/Gather/Concat chains or static dims, at most one -1) is the identity. Holds for non-empty
    tensors."""

    name = "eliminate-reshapes"
    rules = (ReshapeOfReshape, ReshapeToOwnShape)
    rules_with_shapes: ClassVar[tuple[type[Rule], ...]] = (
        ReshapeOfReshapeWithShapes,
        ReshapeToOwnShapeWithShapes,
    )

    def rewrite(self, model: ir.Model) -> int:
        # Two sweeps rather than `needs_shapes`: the usual round trips need no shapes, and inferring
        # them on a large export costs more than the sweep; only what is left waits for inference (and is
        # explained, if asked: the first sweep's refusals may still go in the second).
        count = self._sweep(model, self.rules, explain=False)
        if not any(_is_reshape(n) for n in model.graph):
            return count
        restore = ensure_shapes(model)
        found = self._sweep(model, self.rules_with_shapes, explain=self.explain)
        if not (count or found):
            restore()
        return count + found

    def _sweep(self, model: ir.Model, rules: tuple[type[Rule], ...], explain: bool) -> int:
        asked = self.explain
        self.rules, self.explain = rules, explain
        try:
            count = super().rewrite(model)
        finally:
            del self.rules
            self.explain = asked
        return (count + _bypass(model)) if count else 0


def _identity(op, x: ir.Value, rewrites: int) -> ir.Value:
    """`y = x` as a rule can write it: an Identity, marked for the sweep to bypass."""
    out = op.Identity(x)
    out.producer().metadata_props[_BYPASS] = str(rewrites)
    return out


def _behind(value: ir.Value) -> ir.Value:
    """The value, looking through the Identities this sweep wrote for `y = x` (not bypassed yet)."""
    node = value.producer()
    while node is not None and node.op_type == "Identity" and _BYPASS in node.metadata_props:
        value = node.inputs[0]
        node = value.producer()
    return value


def _bypass(model: ir.Model) -> int:
    """Readers of each Identity the sweep wrote read its input, as Editor.replace does (a graph output that
    a graph input, output or initializer would become keeps the Identity); returns the rewrites beyond one
    that the Identities stood for."""
    edit, extra, dead = Editor(model, EliminateReshapes.name), 0, []
    for node in list(model.graph):
        rewrites = node.metadata_props.pop(_BYPASS, None) if node.op_type == "Identity" else None
        if rewrites is None:
            continue
        extra += int(rewrites) - 1
        out, x = node.outputs[0], node.inputs[0]
        if not (out.is_graph_output() and (x.is_graph_input() or x.is_graph_output() or x.is_initializer())):
            edit.at(node).replace(out, x)
            dead.append(node)
    remove_unused(model.graph, dead)
    return extra


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
        and _behind(source.inputs[0]) is x
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
        if isinstance(e, tuple):
            e = (e[0], _behind(e[1]), e[2])
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
