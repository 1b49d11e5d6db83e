"""adaptive-avgpool-to-pool: the gathered form of uneven AdaptiveAvgPool2d in ONNX files, made plain pools
again."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.core.pooling import axis_plan
from ocrgraft.passes._edit import (
    Editor,
    axes_of,
    const_array,
    dims,
    ints,
    only_use,
    remove_unused,
    same_dim,
)
from ocrgraft.passes.base import Pass, register


class _Dyn:
    """What an index expression of a dynamic pass-through axis computes, for i in Range(0, S): i * S**power
    ("lin", shaped [S, 1, ...] with `rank` dims), sign(i) ("sign"), or the axis size S**power ("size").
    Powers stay >= 0, so every value is a whole number and integer and float division agree."""

    def __init__(self, kind: str, power: int = 0, rank: int = 1):
        self.kind, self.power, self.rank = kind, power, rank


def _is_size(value: ir.Value, x: ir.Value, axis: int) -> bool:
    """Whether the scalar/1-element `value` (Shape sliced, gathered, squeezed) is dim `axis` of x.

    The exporter reads the size from whichever tensor torch.export proved to have it, often the graph input
    rather than the feature map (a padded Conv keeps the width), which shape inference cannot follow: the
    same axis of a tensor of the same rank is accepted unless the two dims are provably different."""
    from ocrgraft.passes._edit import shape_elements

    if value.shape is not None and len(value.shape) > 1:
        return False
    found = shape_elements(value)
    if not found or len(found) != 1 or not isinstance(found[0], tuple):
        return False
    _, src, index = found[0]
    if src is x and index == axis or same_dim(src, index, x, axis):
        return True
    theirs, mine = dims(src), dims(x)
    return (
        theirs is not None
        and len(theirs) == len(mine)
        and index == axis
        and theirs[index] is None
        and mine[axis] is None
    )


def _dyn_index(value: ir.Value, x: ir.Value, axis: int, memo: dict) -> _Dyn | None:
    """Read a run-time index expression as a function of i in Range(0, S), S = dim `axis` of x; None if it
    is anything else. Only the ops the exporter writes for start = trunc(i * S / S) are understood."""
    if id(value) in memo:
        return memo[id(value)]
    memo[id(value)] = None  # no cycles in a graph, but stay safe
    node = value.producer()
    out = None
    if const_array(value) is not None:
        pass
    elif _is_size(value, x, axis):
        out = _Dyn("size", 1, 0)
    elif node is not None and not node.domain:
        op, ins = node.op_type, node.inputs
        args = [_dyn_index(v, x, axis, memo) if v is not None else None for v in ins]
        if op == "Range" and len(ins) == 3:
            start, delta = const_array(ins[0]), const_array(ins[2])
            if (
                start is not None
                and delta is not None
                and start.size == 1
                and delta.size == 1
                and int(start.reshape(-1)[0]) == 0
                and int(delta.reshape(-1)[0]) == 1
                and args[1] is not None
                and args[1].kind == "size"
                and args[1].power == 1
            ):
                out = _Dyn("lin", 0, 1)
        elif op in ("Cast", "Floor", "Abs", "Identity") and args[0] is not None:
            out = args[0]  # whole numbers >= 0: unchanged
        elif op == "Sign" and args[0] is not None and args[0].kind == "lin":
            out = _Dyn("sign", 0, args[0].rank)
        elif op in ("Mul", "Div") and all(a is not None for a in args):
            a, b = args
            if op == "Mul" and a.kind == "size" and b.kind != "size":
                a, b = b, a
            power = a.power + (b.power if op == "Mul" else -b.power)
            if a.kind == "lin" and b.kind == "size" and b.rank == 0 and power >= 0:
                out = _Dyn("lin", power, a.rank)
            elif op == "Mul" and {a.kind, b.kind} == {"lin", "sign"} and a.rank == b.rank:
                out = a if a.kind == "lin" else b  # i * S**p >= 0 times sign(i)
            elif a.kind == b.kind == "size" and power >= 0:
                out = _Dyn("size", power, 0)
        elif op == "Add" and len(ins) == 2:
            for a, other in ((args[0], ins[1]), (args[1], ins[0])):
                zero = const_array(other)
                if (
                    a is not None
                    and a.kind == "lin"
                    and zero is not None
                    and zero.size == 1
                    and not zero.any()
                    and zero.ndim <= a.rank
                ):
                    out = a
        elif op in ("Unsqueeze", "Squeeze") and args[0] is not None:
            axes = axes_of(node)
            if args[0].kind == "size":
                out = args[0] if op == "Squeeze" else None
            elif op == "Unsqueeze" and axes in ([-1], [args[0].rank]):
                out = _Dyn("lin", args[0].power, args[0].rank + 1)
    memo[id(value)] = out
    return out


def _index_base(value: ir.Value) -> tuple[ir.Value, ir.Node | None] | None:
    """Unsqueeze(-1) of Expand(base, shape) or of base: (base, the Expand or None)."""
    node = value.producer()
    if node is None or node.op_type != "Unsqueeze" or axes_of(node) not in ([-1], [4]):
        return None
    value = node.inputs[0]
    node = value.producer()
    return (node.inputs[0], node) if node is not None and node.op_type == "Expand" else (value, None)


def _broadcasts_to_both(shape: ir.Value, bases: list[ir.Value]) -> bool:
    """Whether an Expand's shape is the broadcast shape of the two bases: Shape(Max/Add(b0, b1)) or a
    constant."""
    const = const_array(shape)
    if const is not None:
        arrays = [const_array(b) for b in bases]
        return all(a is not None for a in arrays) and tuple(
            int(d) for d in const.reshape(-1)
        ) == np.broadcast_shapes(*(a.shape for a in arrays))
    node = shape.producer()
    if (
        node is None
        or node.op_type != "Shape"
        or node.attributes.get_int("start", 0) != 0
        or "end" in node.attributes
    ):
        return False
    both = node.inputs[0].producer()
    return (
        both is not None
        and both.op_type in ("Max", "Min", "Add", "Mul")
        and {id(v) for v in both.inputs} == {id(b) for b in bases}
    )


def _index_piece(base: ir.Value, x: ir.Value, axis: int, is_h: bool) -> tuple[str, np.ndarray | None] | None:
    """One axis' half of the index: ("table", [o, k]) for a constant table, ("id", None) for the identity
    over a dynamic pass-through axis, whose index is trunc(Range(0, S) * S / S)."""
    table = const_array(base)
    if table is not None:
        if table.dtype.kind not in "iu" or any(d != 1 for d in table.shape[:-4]):
            return None
        table = table.reshape((1,) * max(0, 4 - table.ndim) + table.shape[-4:])
        # the H table is [oh, kh, 1, 1]; the W table [ow, kw] (left-padded to [1, 1, ow, kw])
        mine, theirs = (table.shape[:2], table.shape[2:]) if is_h else (table.shape[2:], table.shape[:2])
        if any(d != 1 for d in theirs):
            return None
        return "table", table.reshape(mine)
    found = _dyn_index(base, x, axis, {})
    rank = 4 if is_h else 2  # [S, 1, 1, 1] for H, [S, 1] for W
    if found is None or found.kind != "lin" or found.power != 0 or found.rank != rank:
        return None
    return "id", None


def _split_index(index: ir.Value, x: ir.Value) -> tuple | None:
    """The per-axis index tables [(kind, table) for H, W] of the GatherND, constant or built at run time."""
    array = const_array(index)
    if array is not None:
        if array.ndim != 5 or array.shape[-1] != 2 or array.dtype.kind not in "iu":
            return None
        h, w = array[..., 0], array[..., 1]
        if not ((h == h[:, :, :1, :1]).all() and (w == w[:1, :1]).all()):
            return None  # not separable: not an adaptive pool
        return ("table", h[:, :, 0, 0]), ("table", w[0, 0])
    node = index.producer()
    if (
        node is None
        or node.op_type != "Concat"
        or len(node.inputs) != 2
        or node.attributes.get_int("axis", 0) not in (-1, 4)
    ):
        return None
    found = [_index_base(v) for v in node.inputs]
    if any(f is None for f in found):
        return None
    bases = [base for base, _ in found]
    if any(expand is not None and not _broadcasts_to_both(expand.inputs[1], bases) for _, expand in found):
        return None
    rank = len(x.shape)
    pieces = (_index_piece(bases[0], x, rank - 2, True), _index_piece(bases[1], x, rank - 1, False))
    return pieces if all(p is not None for p in pieces) else None


def _bcast(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """array broadcast to `shape` as its trailing dims (leading dims of array must be 1)."""
    if array.ndim > len(shape):
        if any(d != 1 for d in array.shape[: array.ndim - len(shape)]):
            return None
        array = array.reshape(array.shape[array.ndim - len(shape) :])
    try:
        return np.broadcast_to(array, shape)
    except ValueError:
        return None


def _scalar_index(node: ir.Node, axes: tuple[int, int], size: int) -> int | None:
    """The index of Gather(data, scalar constant) along one of `axes`, in [0, size); else None."""
    index = const_array(node.inputs[1])
    if (
        node.op_type != "Gather"
        or node.attributes.get_int("axis", 0) not in axes
        or index is None
        or index.ndim
    ):
        return None
    i = int(index)
    return i + size if -size <= i < 0 else i if 0 <= i < size else None


def _gathered_sum(value: ir.Value, kh: int, kw: int) -> tuple[ir.Value, list[ir.Node]] | None:
    """The value that sums value[..., i, :, j] over every (i, j) by Gather(axis -3)/Gather(axis -1)/Add."""
    rank = len(value.shape)
    leaves, seen = [], set()
    for use in list(value.uses()):
        i = _scalar_index(use.node, (rank - 3, -3), kh) if use.idx == 0 else None
        if i is None or use.node.outputs[0].is_graph_output():
            return None
        for use2 in list(use.node.outputs[0].uses()):
            j = _scalar_index(use2.node, (rank - 2, -1), kw) if use2.idx == 0 else None
            if j is None or (i, j) in seen:
                return None
            seen.add((i, j))
            leaves.append(use2.node.outputs[0])
    if len(seen) != kh * kw:
        return None
    # the Add tree over the leaves: every tree value is read once, by a tree Add
    tree, frontier, adds = {id(v) for v in leaves}, list(leaves), []
    while frontier:
        v = frontier.pop()
        if v.is_graph_output():
            continue
        node = only_use(v)
        if node is None or node.op_type != "Add" or node in adds:
            continue
        if all(id(u) in tree for u in node.inputs):
            adds.append(node)
            tree.add(id(node.outputs[0]))
            frontier.append(node.outputs[0])
    if len(adds) != len(leaves) - 1:
        return None
    roots = [
        v for v in ([n.outputs[0] for n in adds] or leaves) if v.is_graph_output() or only_use(v) not in adds
    ]
    return (roots[0], adds) if len(roots) == 1 else None


@register
class AdaptiveAvgPoolToPool(Pass):
    """torch's gathered AdaptiveAvgPool2d (uneven windows) becomes AveragePool, ReduceMean or an averaging
    MatMul.

    The export-based exporter writes an output size that does not divide the input as Transpose -> GatherND
    of every window -> Transpose -> ReduceMean, or, when the windows differ in size, a masked Where and a
    sum of oh*ow Gather/Add pairs divided by the window sizes (the TorchScript exporter refuses it). The
    weights are read from the index, masks and divisors and applied per axis: nothing on an identity axis,
    ReduceMean over a whole axis, AveragePool where the windows share size and stride, else a MatMul with
    a constant [in, out] averaging matrix. A dynamic pass-through axis (None) stays dynamic.

    Models ocrgraft exports itself never reach this form: the torch frontend rewrites the module before
    export (`uneven-adaptive-avgpool`). The pass is for ONNX files that arrive already exported."""

    name = "adaptive-avgpool-to-pool"
    needs_shapes = refresh_shapes = True

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type == "GatherND" and not n.domain for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):
            if node.op_type != "GatherND" or node.domain or node.graph is not model.graph:
                continue
            found = self._match(node)
            if isinstance(found, str) or found is None:
                if isinstance(found, str) and self.explain:
                    self.misses.append(
                        f"GatherND at node '{node.name or '?'}' (an AdaptiveAvgPool form?): {found}"
                    )
                continue
            x, out, last, plans = found
            edit.at(last)
            edit.replace(out, self._emit(edit, x, plans))
            remove_unused(model.graph, [last])
            count += 1
        return count

    @staticmethod
    def _match(gather: ir.Node):
        if gather.attributes.get_int("batch_dims", 0) != 0:
            return "it has batch_dims, which torch's export never writes"
        first = gather.inputs[0].producer()
        if first is None or first.op_type != "Transpose" or only_use(first.outputs[0]) is not gather:
            return "its data does not come from a Transpose only it reads"
        x = first.inputs[0]
        shape = dims(x)
        if shape is None or len(shape) not in (3, 4):  # [N, C, H, W] or unbatched [C, H, W]
            return "the pooled tensor's rank is unknown or not 3 / 4"
        rank = len(shape)
        lead = list(range(rank - 2))
        if ints(first, "perm") != [rank - 2, rank - 1, *lead]:
            return f"the Transpose before it has perm {ints(first, 'perm')}, not the spatial axes first"
        second = only_use(gather.outputs[0])
        if (
            second is None
            or second.op_type != "Transpose"
            or ints(second, "perm") != [4 + i for i in lead] + [0, 1, 2, 3]
        ):  # [oh,kh,ow,kw,N,C] -> [N,C,oh,kh,ow,kw]
            return "it is not read by one Transpose that puts the windows last"
        pieces = _split_index(gather.inputs[1], x)
        if pieces is None:
            return "its index is not a constant grid of windows per axis"
        # per axis: (out, window) sizes of the weight grid; an identity over a dynamic axis counts as 1 x 1
        grid, tables = [], []
        for axis, (kind, table) in zip((rank - 2, rank - 1), pieces):
            if kind == "id":
                grid += [1, 1]
                tables.append(None)
                continue
            size = shape[axis]
            if size is None or table.ndim != 2:
                return f"axis {axis} is dynamic or its window table is not 2-D"
            table = np.where(table < 0, table + size, table).astype(np.int64)
            if (table < 0).any() or (table >= size).any():
                return f"its windows on axis {axis} reach outside the input"
            grid += list(table.shape)
            tables.append(table)
        grid = tuple(grid)
        keep = np.ones(grid, dtype=bool)
        value = second.outputs[0]
        while (node := only_use(value)) is not None and node.op_type == "Where" and node.inputs[2] is value:
            cond, fill = const_array(node.inputs[0]), const_array(node.inputs[1])  # masked_fill(mask, 0)
            if (
                cond is None
                or fill is None
                or fill.size != 1
                or fill.any()
                or cond.dtype != np.bool_
                or max(cond.ndim, fill.ndim) > rank + 2
            ):
                return "a Where after it is not a constant mask filling zeros"
            cond = _bcast(cond, grid)
            if cond is None:
                return "a Where mask does not broadcast to the window grid"
            keep &= ~cond
            value = node.outputs[0]
        oh, kh, ow, kw = grid
        node = only_use(value)
        if (
            node is not None
            and node.op_type in ("ReduceMean", "ReduceSum")
            and sorted(a % (rank + 2) for a in axes_of(node) or []) == [rank - 1, rank + 1]
            and node.attributes.get_int("keepdims", 1) == 0
        ):
            total, weights = node.outputs[0], keep / (kh * kw if node.op_type == "ReduceMean" else 1)
        else:
            summed = _gathered_sum(value, kh, kw)
            if summed is None:
                return "the windows are neither reduced by ReduceMean / ReduceSum nor summed by Gather / Add"
            total, weights = summed[0], keep.astype(np.float64)
        # an optional Div by (or Mul with) constant window sizes
        out, node = total, only_use(total)
        if node is not None and node.op_type in ("Div", "Mul") and node.inputs[0] is total:
            const = const_array(node.inputs[1])
            if const is not None and const.dtype.kind == "f" and const.ndim <= rank:
                factor = _bcast(const.astype(np.float64), (oh, ow))
                if factor is None or not factor.all():
                    return "the window sizes it is divided by do not fit the window grid"
                weights = weights * (1.0 / factor if node.op_type == "Div" else factor)[:, None, :, None]
                out = node.outputs[0]
        # separable weights: w[i, k, j, l] = a[i, k] * b[j, l]
        flat = weights.reshape(oh * kh, ow * kw)
        r, c = np.unravel_index(np.argmax(np.abs(flat)), flat.shape)
        if flat[r, c] == 0:
            return "every window weight is zero"
        a, b = flat[:, c], flat[r, :] / flat[r, c]
        if not np.allclose(flat, np.outer(a, b), rtol=1e-6, atol=1e-12):
            return "the window weights are not separable per axis, so it is no average pool"
        a, b = a.reshape(oh, kh), b.reshape(ow, kw)
        if tables[0] is None:  # a dynamic identity axis: its one weight goes to the other axis
            a, b = np.ones_like(a), b * a.item()
        if tables[1] is None:
            a, b = a * b.item(), np.ones_like(b)
        if tables[0] is None and tables[1] is None and not np.isclose(a.item(), 1.0):
            return "it pools nothing but scales: not an average"
        mats = []
        for axis, table, w in ((rank - 2, tables[0], a), (rank - 1, tables[1], b)):
            if table is None:
                mats.append(None)
                continue
            m = np.zeros((table.shape[0], shape[axis]), dtype=np.float64)
            np.add.at(
                m, (np.repeat(np.arange(table.shape[0]), table.shape[1]), table.reshape(-1)), w.reshape(-1)
            )
            mats.append(m)
        if mats[0] is not None and mats[1] is not None:  # so that an averaging pool's rows sum to 1
            sums = mats[0].sum(axis=1)
            if sums[0] != 0 and np.allclose(sums, sums[0], rtol=1e-9):
                mats = [mats[0] / sums[0], mats[1] * sums[0]]
        plans = [("id",) if m is None else axis_plan(m) + (m,) for m in mats]
        if rank != 4:  # a pool needs [N, C, H, W]: an unbatched map takes the MatMul
            plans = [("matmul", p[-1]) if p[0] == "pool" else p for p in plans]
        return x, out, out.producer(), plans

    @staticmethod
    def _emit(edit: Editor, x: ir.Value, plans) -> ir.Value:
        dtype = x.dtype.numpy() if x.dtype is not None else np.float32
        rank = len(x.shape)
        y = x
        if any(p[0] == "pool" for p in plans):
            pooled = [(p[1], p[2]) if p[0] == "pool" else (1, 1) for p in plans]
            y = edit.op(
                "AveragePool",
                [y],
                {"kernel_shape": [k for k, _ in pooled], "strides": [s for _, s in pooled]},
            )
        full = [axis for axis, p in zip((rank - 2, rank - 1), plans) if p[0] == "full"]
        if full:
            y = edit.reduce("ReduceMean", y, full, keepdims=1)
        if plans[1][0] == "matmul":  # [.., H, W] @ [W, ow]
            y = edit.op("MatMul", [y, edit.const(plans[1][-1].T.astype(dtype), "average_w")])
        if plans[0][0] == "matmul":  # the same over H, between two Transposes
            swap = [*range(rank - 2), rank - 1, rank - 2]
            y = edit.op("Transpose", [y], {"perm": swap})
            y = edit.op("MatMul", [y, edit.const(plans[0][-1].T.astype(dtype), "average_h")])
            y = edit.op("Transpose", [y], {"perm": swap})
        if y is x:
            y = edit.op("Identity", [x])
        return y
