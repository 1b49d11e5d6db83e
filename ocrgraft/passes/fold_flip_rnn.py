"""fold-flip-rnn: flip -> forward RNN -> flip folded into the RNN's own reverse direction, as rewrite rules.

Pattern:  y = Slice(LSTM(Slice(x, -1, -INF, t, -1)), -1, -INF, t, -1)          t: the time axis (layout)
          y = Slice(Squeeze(LSTM(Slice(x, ...)), t + 1), -1, -INF, t, -1)     (num_directions squeezed)
          (GRU, RNN alike; their final states, when read, are outputs of the pattern too)
Rewrite:  y = LSTM(x, direction='reverse')          (or Squeeze(LSTM(x, direction='reverse'), t + 1))
Why:      a backward RNN written as two unidirectional layers (the Ascend CRNN runs torch.flip around its
          backward LSTM) is exactly a direction='reverse' RNN: the flips and their Slice nodes go. Not with
          sequence lengths (reversing padded sequences is not the same), nor where the RNN's output has other
          readers (--explain names them). An output read by several flips, or by none (only the final states
          are read), no one-rooted pattern can match: `_fold_other_forms`, the hand-written loop, folds those.
"""

from __future__ import annotations

from typing import ClassVar

import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.passes._edit import (
    RNNS,
    Editor,
    axes_of,
    const_array,
    dims,
    remove_unused,
    set_attr,
)
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass

_OUTPUTS = {"LSTM": ("y", "y_h", "y_c"), "GRU": ("y", "y_h"), "RNN": ("y", "y_h")}


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


def _listed(outputs) -> list:
    """A node's outputs as a list (the pattern and rewrite builders return a lone output bare)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _name(node: ir.Node) -> str:
    return f"{node.op_type} '{node.name or '?'}'"


def _read_elsewhere(value: ir.Value, inside: list[ir.Node]) -> str | None:
    """Why `value`, computed inside the match, cannot go: a graph output, or read outside the match."""
    readers = [u.node for u in value.uses() if all(u.node is not n for n in inside)]
    if not readers and not value.is_graph_output():
        return None
    by = _name(readers[0]) if readers else "a graph output"
    of = _name(value.producer())
    return f"the output '{value.name}' of {of} is also read by {by}, so it cannot be folded away"


class FlipRnnFlip(Rule):
    """One op type, output count and form (onnxscript binds a node's outputs by position, and each final
    state read elsewhere must be replaced): `RULES` below lists one subclass per triple."""

    op_type: ClassVar[str]
    outputs: ClassVar[tuple[str, ...]]
    squeezed: ClassVar[bool]

    def __init__(self, orphans: list[ir.Value] | None = None):
        super().__init__(orphans)
        # what the match removes is checked in `check`, which names the other reader, and a rule for fewer
        # outputs than the node has reaches the check too, to step aside without a reason
        self.remove_nodes = False

    def pattern(self, op, x, starts, ends, axes, steps):
        rnn = getattr(op, self.op_type)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=list(self.outputs)
        )
        y, *states = _listed(rnn)
        if self.squeezed:
            y = op.Squeeze(y, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["squeezed"])
        return (op.Slice(y, starts, ends, axes, steps), *states)

    def check(self, context, x, y, starts, ends, axes, steps, squeezed=None, **_) -> MatchResult:
        result = MatchResult()
        rnn = y.producer()
        if len(rnn.outputs) != len(self.outputs):
            return result.fail("")  # no reason: the rule for this many outputs decides
        what, layout = _name(rnn), rnn.attributes.get_int("layout", 0)
        if context.graph_or_function is not context.model.graph:
            return result.fail(
                f"{what} is inside a subgraph (an If or Loop body), which the pass leaves alone"
            )
        if _flipped(context.root, layout) is None:
            return result.fail(f"it does not reverse the whole time axis ({layout}) of the output of {what}")
        if squeezed is not None and axes_of(squeezed.producer()) != [layout + 1]:
            return result.fail(f"the Squeeze after {what} does not remove just its num_directions axis")
        direction = rnn.attributes.get_string("direction", "forward")
        if direction != "forward":
            return result.fail(f"{what} runs {direction}, not forward")
        if len(rnn.inputs) > 4 and rnn.inputs[4] is not None:
            lengths = rnn.inputs[4].name
            return result.fail(
                f"{what} has sequence lengths '{lengths}': reversing padded ones is not the same"
            )
        self._source = _flipped(x.producer(), layout)
        if self._source is None:
            return result.fail(f"the input '{x.name}' of {what} is not a flip of its time axis")
        inside = [context.root, rnn] + ([squeezed.producer()] if squeezed is not None else [])
        for value in [y] + ([squeezed] if squeezed is not None else []):
            reason = _read_elsewhere(value, inside)
            if reason:
                return result.fail(reason)
        self.replaced(x, starts, ends, axes, steps)
        return result

    def rewrite(self, op, x, y, squeezed=None, **_):
        rnn = y.producer()
        attributes = {**rnn.attributes, "direction": "reverse"}
        new = getattr(op, self.op_type)(
            self._source, *rnn.inputs[1:], _outputs=len(self.outputs), _name=rnn.name, **attributes
        )
        new_y, *states = _listed(new)
        if squeezed is not None:  # y stays, read by the Squeeze: it keeps its name
            new_y.name = y.name
            squeeze = squeezed.producer()
            new_y = op.Squeeze(new_y, *squeeze.inputs[1:], _name=squeeze.name, **squeeze.attributes)
        return (new_y, *states)


RULES = tuple(
    type(
        f"FlipRnnFlip{op_type}",
        (FlipRnnFlip,),
        {"op_type": op_type, "outputs": names[:count], "squeezed": sq},
    )
    for op_type, names in _OUTPUTS.items()
    for count in range(1, len(names) + 1)
    for sq in (False, True)
)


def _output_flips(y: ir.Value, time_axis: int) -> list[ir.Node] | None:
    """The Slices that reverse the RNN output (directly or after squeezing num_directions), if every use
    does."""
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


def _fold_other_forms(model: ir.Model, tag: str) -> int:
    """The forms no rule can match: the RNN's output reversed by several flips, or read by none (only its
    final states are). A pattern ends at one node and what it removes may be read only inside it, so it
    holds a fixed number of flips (one); the pass's hand-written loop is kept for the rest, run first."""
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
        flips = _output_flips(rnn.outputs[0], layout)
        if source is None or flips is None or len(flips) == 1:  # one flip: the rules' form
            continue
        flip_in = rnn.inputs[0].producer()
        rnn.replace_input_with(0, source)
        set_attr(rnn, "direction", "reverse")
        edit = Editor(model, tag)
        for flip in flips:
            edit.at(flip).replace(flip.outputs[0], flip.inputs[0])
        remove_unused(model.graph, flips + [flip_in])
        count += 1
    return count


@register
class FoldFlipRnn(RulePass):
    """flip -> forward LSTM/GRU/RNN -> flip becomes one reverse-direction RNN.

    A backward RNN written as two unidirectional layers (the Ascend CRNN runs torch.flip around its
    backward LSTM) is exactly a direction='reverse' RNN: the flips and their Slice nodes go."""

    name = "fold-flip-rnn"
    rules = RULES
    needs_shapes = refresh_shapes = True

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in RNNS for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        count = _fold_other_forms(model, self.name) + super().rewrite(model)
        if count:  # a rewritten RNN follows its output flip; a reader of its final states may come before
            model.graph.sort()
        return count
