"""Dynamic-shape fixes (what the Ascend CRNN fix.py did by node name, here by pattern).

Exporters compute reshape targets and RNN initial states from the input's shape at run time
(Shape -> Gather -> Unsqueeze -> Concat). Vendor compilers that build one engine for a shape range
(ATC) schedule such chains poorly or fail on them; these rewrites remove them where the graph proves
they are not needed, without fixing any dynamic dimension.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.core.graph import all_nodes
from ocrgraft.passes._edit import (
    Editor,
    axes_of,
    const_array,
    dims,
    ensure_shapes,
    remove_unused,
    remove_unused_values,
    same_dim,
    set_attr,
    shape_elements,
)
from ocrgraft.passes.base import Pass, register

RNNS = ("LSTM", "GRU", "RNN")


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


# -- RNN initial states --------------------------------------------------------------------------------


def _is_zero(value: ir.Value) -> bool:
    """A tensor that is all zeros whatever the input: a zero constant, or built from one by shape ops."""
    array = const_array(value)
    if array is not None:
        return not np.any(array)
    node = value.producer()
    if node is None or node.domain:
        return False
    if node.op_type == "ConstantOfShape":
        fill = node.attributes.get_tensor("value")
        return fill is None or not np.any(fill.numpy())
    if node.op_type in ("Expand", "Tile", "Reshape", "Unsqueeze", "Squeeze", "Cast", "Identity", "Transpose"):
        return _is_zero(node.inputs[0])
    return False


@register
class DropZeroRnnState(Pass):
    """Drop LSTM/GRU/RNN initial states that are zeros (often built from the input's shape); zero is the
    default.

    torch exports h0/c0 as ConstantOfShape(Concat(1, Shape(x)[1], hidden)) for a dynamic batch, or as a
    zero constant with the example batch baked in, which breaks other batch sizes on some backends. The
    optional inputs are removed and their shape chains with them."""

    name = "drop-zero-rnn-state"

    def rewrite(self, model: ir.Model) -> int:
        count, dead = 0, []
        for node in all_nodes(model):
            if node.op_type not in RNNS or node.domain:
                continue
            states = (5, 6) if node.op_type == "LSTM" else (5,)
            for index in states:
                value = node.inputs[index] if index < len(node.inputs) else None
                if value is not None and _is_zero(value):
                    node.replace_input_with(index, None)
                    dead.append(value)
                    count += 1
            used = [i for i, v in enumerate(node.inputs) if v is not None]
            node.resize_inputs(used[-1] + 1 if used else 0)
        remove_unused_values(model.graph, dead)
        return count


# -- flip -> RNN -> flip ---------------------------------------------------------------------------------


def _flipped(node: ir.Node | None, axis: int) -> ir.Value | None:
    """The input of a Slice that reverses `axis` entirely (torch.flip), else None."""
    if node is None or node.op_type != "Slice" or node.domain or len(node.inputs) < 5:
        return None
    starts, ends, axes, steps = (const_array(v) for v in node.inputs[1:5])
    if any(a is None for a in (starts, ends, axes, steps)) or axes.size != 1:
        return None
    data = node.inputs[0]
    rank = len(data.shape) if data.shape is not None else None
    ax = int(axes.reshape(-1)[0])
    if ax < 0 and rank is not None:
        ax += rank
    size = dims(data)[ax] if rank is not None and 0 <= ax < rank else None
    end = int(ends.reshape(-1)[0])
    whole = end <= -(2**31 - 1) or (size is not None and end <= -size - 1)
    if ax == axis and int(starts.reshape(-1)[0]) == -1 and int(steps.reshape(-1)[0]) == -1 and whole:
        return data
    return None


@register
class FoldFlipRnn(Pass):
    """flip -> forward LSTM/GRU/RNN -> flip becomes one reverse-direction RNN.

    A backward RNN written as two unidirectional layers (the Ascend CRNN runs torch.flip around its
    backward LSTM) is exactly a direction='reverse' RNN: the flips and their Slice nodes go."""

    name = "fold-flip-rnn"
    needs_shapes = refresh_shapes = True

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in RNNS for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        for rnn in list(model.graph):
            if (
                rnn.op_type not in RNNS
                or rnn.domain
                or rnn.attributes.get_string("direction", "forward") != "forward"
            ):
                continue
            if len(rnn.inputs) > 4 and rnn.inputs[4] is not None:
                continue  # sequence_lens: reversing padded sequences is not the same
            layout = rnn.attributes.get_int("layout", 0)
            source = _flipped(rnn.inputs[0].producer(), layout)
            flips = self._output_flips(rnn.outputs[0], layout)
            if source is None or flips is None:
                continue
            flip_in = rnn.inputs[0].producer()
            rnn.replace_input_with(0, source)
            set_attr(rnn, "direction", "reverse")
            edit = Editor(model, self.name)
            for flip in flips:
                edit.at(flip).replace(flip.outputs[0], flip.inputs[0])
            remove_unused(model.graph, flips + [flip_in])
            count += 1
        return count

    @staticmethod
    def _output_flips(y: ir.Value, time_axis: int) -> list[ir.Node] | None:
        """The Slices that reverse the RNN output (directly or after squeezing num_directions), if every
        use does."""
        if y.is_graph_output():
            return None
        flips = []
        for use in y.uses():
            node = use.node
            if (
                node.op_type == "Squeeze"
                and axes_of(node) == [time_axis + 1]
                and not node.outputs[0].is_graph_output()
            ):
                inner = [u.node for u in node.outputs[0].uses()]
                if not inner or any(_flipped(n, time_axis) is None for n in inner):
                    return None
                flips += inner
            elif _flipped(node, time_axis) is not None:
                flips.append(node)
            else:
                return None
        return flips


# -- Concat of Squeezes -----------------------------------------------------------------------------------


@register
class SqueezeAfterConcat(Pass):
    """Concat(Squeeze(a, k), Squeeze(b, k), ...) becomes Squeeze(Concat(a, b, ...), k): one Squeeze after
    the join.

    The last step of the Ascend CRNN fix.py: each LSTM's output [T, 1, b, h] was squeezed before the fw/bw
    Concat; the script concatenated the 4-D outputs and squeezed once (by node name, on every Concat).
    Here every input of the Concat must be a Squeeze of the same single axis (attribute or constant input,
    negative axes read with the known rank); the Concat axis moves to the unsqueezed rank. Exact at any
    shape."""

    name = "squeeze-after-concat"
    needs_shapes = refresh_shapes = True  # ranks, for negative axes

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type == "Concat" and any(_squeezed(v) for v in n.inputs) for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for concat in list(model.graph):
            match = self._match(concat)
            if isinstance(match, str) and self.explain:
                self.misses.append(f"Concat at node '{concat.name or '?'}': {match}")
            if not isinstance(match, tuple):
                continue
            sources, axis, squeezed = match
            edit.at(concat)
            edit.replace(
                concat.outputs[0], edit.squeeze(edit.op("Concat", sources, {"axis": axis}), [squeezed])
            )
            remove_unused(model.graph, [concat])  # and the Squeezes nothing else reads
            count += 1
        return count

    @staticmethod
    def _match(concat: ir.Node) -> tuple[list[ir.Value], int, int] | str | None:
        """(the unsqueezed inputs, the Concat axis on their rank, the squeezed axis); None for a node that
        is no candidate, or why a Concat of Squeezes is not rewritten."""
        if (
            concat.op_type != "Concat"
            or concat.domain
            or not concat.inputs
            or any(v is None for v in concat.inputs)
        ):
            return None
        if not all(_squeezed(v) for v in concat.inputs):
            return None if not any(_squeezed(v) for v in concat.inputs) else "not every input is a Squeeze"
        squeezes = [v.producer() for v in concat.inputs]
        ranks = {len(s.inputs[0].shape) for s in squeezes if s.inputs[0].shape is not None}
        if concat.outputs[0].shape is not None:
            ranks.add(len(concat.outputs[0].shape) + 1)
        if len(ranks) > 1:
            return "the squeezed tensors differ in rank"
        rank = ranks.pop() if ranks else None
        found = set()
        for squeeze in squeezes:
            axes = axes_of(squeeze)
            if axes is None or len(axes) != 1:
                return f"Squeeze '{squeeze.name or '?'}' does not remove exactly one known axis"
            k = axes[0]
            if k < 0:
                if rank is None:
                    return "a Squeeze axis is negative and the rank is unknown"
                k += rank
            found.add(k)
        if len(found) != 1:
            return f"the Squeezes remove different axes ({sorted(found)})"
        k = found.pop()
        j = concat.attributes.get_int("axis")
        if j is None:
            return "the Concat has no axis"
        if j < 0:
            if rank is None:
                return "the Concat axis is negative and the rank is unknown"
            j += rank - 1  # the Concat's own (squeezed) rank
        if k < 0 or j < 0 or (rank is not None and (k >= rank or j >= rank - 1)):
            return "the axes are out of range"
        return [s.inputs[0] for s in squeezes], (j if j < k else j + 1), k


def _squeezed(value: ir.Value | None) -> bool:
    node = value.producer() if value is not None else None
    return node is not None and node.op_type == "Squeeze" and not node.domain
