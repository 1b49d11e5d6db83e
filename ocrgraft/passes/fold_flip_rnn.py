"""fold-flip-rnn: flip -> RNN -> flip chains folded into the RNN's own reverse direction."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.passes._edit import (
    RNNS,
    Editor,
    axes_of,
    const_array,
    dims,
    remove_unused,
    set_attr,
)
from ocrgraft.passes.base import Pass, register


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
