"""squeeze-after-concat: a Concat of Squeezes becomes a Squeeze of one Concat (fewer nodes for ATC to
schedule)."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.passes._edit import (
    Editor,
    axes_of,
    remove_unused,
)
from ocrgraft.passes.base import Pass, register


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
