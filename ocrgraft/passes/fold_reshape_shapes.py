"""fold-reshape-shapes: run-time reshape targets (Shape -> Gather -> Unsqueeze -> Concat) folded to constants
where the graph proves them; the Ascend CRNN seed's fix.py did this by node name, here it is by pattern.
Vendor compilers that build one engine for a shape range (ATC) schedule such chains poorly or fail on them."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.passes._edit import (
    Editor,
    const_array,
    dims,
    ensure_shapes,
    remove_unused_values,
    same_dim,
    shape_elements,
)
from ocrgraft.passes.base import Pass, register


def constant_target(x: ir.Value, elements: list) -> list[int] | None:
    """A constant Reshape target equal to the computed one, using 0 (copy x's dim) and -1 (infer), or None.

    Each element is a number, a dim of x at the same position (-> 0), or one left open (-> -1). Two open
    elements are allowed when one is the original -1 and x's dims are all accounted for: its value is then
    the product of x's static dims over the target's static dims."""
    xd = dims(x)
    if xd is None:
        return None
    out, open_ = [], []
    for i, e in enumerate(elements):
        if isinstance(e, int) and e > 0:
            out.append(e)
        elif e == 0 and i < len(xd):
            out.append(0)
        elif isinstance(e, tuple) and dims(e[1]) is not None and dims(e[1])[e[2]] is not None:
            out.append(dims(e[1])[e[2]])
        elif isinstance(e, tuple) and i < len(xd) and same_dim(e[1], e[2], x, i):
            out.append(0)
        else:
            out.append(None)
            open_.append(i)
    if len(open_) == 1:
        out[open_[0]] = -1
        return out
    if len(open_) != 2 or sum(elements[i] == -1 for i in open_) != 1:
        return None
    infer, other = sorted(open_, key=lambda i: elements[i] != -1)
    e = elements[other]
    moved = [
        k for k in range(len(xd)) if xd[k] is None and isinstance(e, tuple) and same_dim(e[1], e[2], x, k)
    ]
    copied = {i for i, v in enumerate(out) if v == 0}
    dynamic = {k for k, d in enumerate(xd) if d is None}
    if len(moved) != 1 or dynamic != copied | set(moved) or moved[0] in copied:
        return None
    known = int(np.prod([d for d in xd if d is not None]))
    fixed = int(np.prod([v for v in out if v]))
    if fixed == 0 or known % fixed:
        return None
    out[infer], out[other] = known // fixed, -1
    return out


@register
class FoldReshapeShapes(Pass):
    """Reshape targets computed at run time (Shape -> Gather -> Concat) become constants with 0 and -1,
    keeping dims dynamic.

    The shape chains exporters emit for view/flatten make compilers that build one engine for a shape
    range (ATC) infer shapes node by node. Where every element of the target is a number, a dim of the
    input at the same position (0 copies it) or the one left to infer (-1), the chain is not needed."""

    name = "fold-reshape-shapes"
    needs_shapes = True

    def applies(self, model: ir.Model) -> bool:  # a target computed at run time
        return any(n.op_type == "Reshape" and const_array(n.inputs[1]) is None for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        while found := self._fold(model):  # a constant target sharpens the shapes after it
            count += found
            ensure_shapes(model)
        return count

    def _fold(self, model: ir.Model) -> int:
        edit, count, dead = Editor(model, self.name), 0, []
        for node in list(model.graph):
            if node.op_type != "Reshape" or node.domain or node.attributes.get_int("allowzero", 0):
                continue
            shape = node.inputs[1]
            if const_array(shape) is not None:
                continue
            elements = shape_elements(shape)
            target = constant_target(node.inputs[0], elements) if elements is not None else None
            if target is None:
                continue
            node.replace_input_with(1, edit.i64(target, "shape"))
            dead.append(shape)
            count += 1
        remove_unused_values(model.graph, dead)
        return count
