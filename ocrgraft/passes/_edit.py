"""Small graph-editing helpers the passes share: constants, new nodes, rewiring, dead code, and the few
facts (dim specs, RNN ops, GridSample settings, pool windows) that more than one pass reads."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.graph import all_nodes, infer_shapes_fresh, opset_of

log = logging.getLogger("ocrgraft.passes")


def const_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents (initializer or Constant node), or None; never edits the model."""
    if value is None or value.is_graph_input():
        return None  # an initializer that is also an input can be overridden at run time
    if value.const_value is not None:
        return value.const_value.numpy()
    node = value.producer()
    if node is None or node.op_type != "Constant" or node.domain or len(node.attributes) != 1:
        return None
    attr = next(iter(node.attributes.values()))
    if attr.name == "value":
        return attr.as_tensor().numpy()
    kinds = {
        "value_float": np.float32,
        "value_floats": np.float32,
        "value_int": np.int64,
        "value_ints": np.int64,
    }
    return np.asarray(attr.value, dtype=kinds[attr.name]) if attr.name in kinds else None


def ints(node: ir.Node, name: str, default=None) -> list[int] | None:
    found = node.attributes.get_ints(name)
    return list(found) if found is not None else default


def axes_of(node: ir.Node) -> list[int] | None:
    """Axes of Squeeze/Unsqueeze/Reduce*, from the attribute (old opsets) or the constant input."""
    found = ints(node, "axes")
    if found is None and len(node.inputs) > 1:
        array = const_array(node.inputs[1])
        found = None if array is None else [int(a) for a in array.reshape(-1)]
    return found


def set_attr(node: ir.Node, name: str, value) -> None:
    node.attributes[name] = ir.convenience.convert_attribute(name, value)


def dims(value: ir.Value | None) -> list[int | None] | None:
    """Static dims of a value (None for a dynamic dim), or None when the rank is unknown."""
    if value is None or value.shape is None:
        return None
    return [d if isinstance(d, int) else None for d in value.shape]


def same_dim(a: ir.Value, ia: int, b: ir.Value, ib: int) -> bool:
    """Whether dim ia of a provably equals dim ib of b (the same value, number or named dim)."""
    if a is b and ia == ib:
        return True
    if a.shape is None or b.shape is None or not (ia < len(a.shape) and ib < len(b.shape)):
        return False
    da, db = a.shape[ia], b.shape[ib]
    if isinstance(da, int) or isinstance(db, int):
        return da == db
    return bool(da.value) and da.value == db.value and not str(da.value).startswith("unk__")


def only_use(value: ir.Value) -> ir.Node | None:
    """The single consumer of a value that is not a graph output, else None."""
    uses = list(value.uses())
    if len(uses) != 1 or value.is_graph_output():
        return None
    return uses[0].node


def ensure_shapes(model: ir.Model):
    """Re-infer shapes (so a shape-dependent pass also works outside a pipeline); returns a function
    that puts the old annotations back, for a pass that then changes nothing."""
    values = [v for n in model.graph for v in n.outputs]
    saved = [(v, v.type, v.shape) for v in values]
    outputs = [(v, v.type, v.shape) for v in model.graph.outputs]
    infer_shapes_fresh(model)

    def restore() -> None:
        for value, type_, shape in saved + outputs:
            value.type, value.shape = type_, shape

    return restore


class Editor:
    """Creates the nodes of one rewrite, inserted before an anchor node so the order stays valid,
    with constants as initializers; one per pass run."""

    def __init__(self, model: ir.Model, tag: str):
        self.model = model
        self.graph = model.graph
        self.tag = tag
        self.anchor: ir.Node | None = None
        self._names: set[str] | None = None
        self._next: dict[str, int] = {}

    @property
    def opset(self) -> int:
        return opset_of(self.model)

    def at(self, anchor: ir.Node) -> Editor:
        self.anchor = anchor
        return self

    def unique(self, hint: str) -> str:
        if self._names is None:
            self._names = {v.name for v in self.graph.inputs} | set(self.graph.initializers)
            self._names |= {v.name for n in all_nodes(self.graph) for v in n.outputs}
        name, i = hint, self._next.get(hint, 1)  # resume numbering: many constants share one hint
        while name in self._names:
            name, i = f"{hint}_{i}", i + 1
        self._next[hint] = i
        self._names.add(name)
        return name

    def op(self, op_type: str, inputs, attrs: dict | None = None, num_outputs: int = 1):
        node = ir.node(op_type, list(inputs), attrs or None, num_outputs=num_outputs)
        for out in node.outputs:
            out.name = self.unique(f"{self.tag}/{op_type}")
        self.graph.insert_before(self.anchor, node)
        return node.outputs[0] if num_outputs == 1 else tuple(node.outputs)

    def const(self, array, hint: str = "const") -> ir.Value:
        name = self.unique(f"{self.tag}/{hint}")
        value = ir.val(
            name, const_value=ir.Tensor(np.asarray(array), name=name)
        )  # ir.tensor would probe protocols
        self.graph.register_initializer(value)
        return value

    def i64(self, values, hint: str = "ints") -> ir.Value:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def f32(self, values, hint: str = "floats") -> ir.Value:
        return self.const(np.asarray(values, dtype=np.float32), hint)

    def reduce(self, op_type: str, x: ir.Value, axes: list[int], keepdims: int = 1) -> ir.Value:
        """ReduceX with axes as an attribute or an input, whichever the model's opset wants."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.op(op_type, [x, self.i64(axes, "axes")], {"keepdims": keepdims})
        return self.op(op_type, [x], {"axes": list(axes), "keepdims": keepdims})

    def squeeze(self, x: ir.Value, axes: list[int]) -> ir.Value:
        """Squeeze with axes as an attribute (opset < 13) or an input, whichever the model's opset wants."""
        if self.opset >= 13:
            return self.op("Squeeze", [x, self.i64(axes, "axes")])
        return self.op("Squeeze", [x], {"axes": list(axes)})

    def replace(self, old: ir.Value, new: ir.Value) -> None:
        """Make every consumer of `old` (a graph output too, keeping its name) read `new`."""
        if old.is_graph_output():
            if new.is_graph_input() or new.is_graph_output() or new.is_initializer():
                new = self.op("Identity", [new])
            name = old.name
            old.name = self.unique(f"{name}.replaced")
            new.name = name
            new.type = new.type or old.type
            new.shape = new.shape or old.shape
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)


def remove_unused_values(graph: ir.Graph, values) -> int:
    """Remove what produced the given values (nodes or initializers) if nothing reads it any more."""
    removed = remove_unused(graph, [v.producer() for v in values if v.producer() is not None])
    for value in values:
        if (
            value.producer() is None
            and value.is_initializer()
            and not value.uses()
            and not value.is_graph_input()
            and not value.is_graph_output()
            and value.name in graph.initializers
        ):
            graph.initializers.pop(value.name)
            removed += 1
    return removed


def remove_unused(graph: ir.Graph, nodes) -> int:
    """Remove the given nodes if nothing reads them, then their producers that became unused. The dead
    are found first and removed in one call: onnx_ir's per-call checks would otherwise cost more than
    the removal on a graph with thousands of them."""
    stack, dead, constants = list(nodes), {}, {}
    while stack:
        node = stack.pop()
        if id(node) in dead or node.graph is not graph:
            continue
        if any(v.is_graph_output() or any(id(u.node) not in dead for u in v.uses()) for v in node.outputs):
            continue
        dead[id(node)] = node
        for value in node.inputs:
            if value is None:
                continue
            if value.producer() is not None:
                stack.append(value.producer())
            elif value.is_initializer():
                constants[id(value)] = value
    graph.remove(dead.values(), safe=True)
    for value in constants.values():  # once each: uses() copies, and a shared constant has thousands
        if not value.uses() and not value.is_graph_input() and not value.is_graph_output():
            graph.initializers.pop(value.name)
    return len(dead)


# -- reading shape tensors symbolically ---------------------------------------------------------------


def shape_elements(value: ir.Value) -> list | None:
    """The elements of a small int tensor that computes a shape: ints, ('dim', tensor, axis), None if
    unknown."""
    array = const_array(value)
    if array is not None:
        return [int(v) for v in array.reshape(-1)] if array.ndim <= 1 and array.dtype.kind in "iu" else None
    node = value.producer()
    if node is None or node.domain:
        return None
    if node.op_type == "Shape":
        src = node.inputs[0]
        if src.shape is None:
            return None
        rank = len(src.shape)
        start, end = (node.attributes.get_int(key, default) for key, default in (("start", 0), ("end", rank)))
        start, end = (min(max(i + rank if i < 0 else i, 0), rank) for i in (start, end))
        return [("dim", src, i) for i in range(start, end)]
    if node.op_type in ("Cast", "Identity"):
        return shape_elements(node.inputs[0])
    if node.op_type == "Concat":  # an unreadable part of known length gives unknown (None) elements
        parts = [
            shape_elements(v) or ([None] * dims(v)[0] if dims(v) and dims(v)[0] is not None else None)
            for v in node.inputs
        ]
        return None if any(p is None for p in parts) else [e for p in parts for e in p]
    if node.op_type in ("Unsqueeze", "Squeeze", "Reshape"):
        inner = shape_elements(node.inputs[0])
        return inner if inner is not None and len(inner) == 1 else None
    if node.op_type == "Slice" and len(node.inputs) >= 3:
        source = shape_elements(node.inputs[0])
        starts, ends, *rest = (const_array(v) if v is not None else None for v in node.inputs[1:5])
        if (
            source is None
            or starts is None
            or ends is None
            or starts.size != 1
            or any(r is not None and r.reshape(-1).tolist() not in ([0], [1]) for r in rest)
        ):
            return None  # only a plain slice along the one axis, step 1
        return source[int(starts.reshape(-1)[0]) : int(ends.reshape(-1)[0])]
    if node.op_type == "Gather":
        source, index = shape_elements(node.inputs[0]), const_array(node.inputs[1])
        if source is None or index is None or node.attributes.get_int("axis", 0) != 0:
            return None
        try:
            return [source[int(i)] for i in index.reshape(-1)]
        except IndexError:
            return None
    return None


def is_shape_dim(element, value: ir.Value, axis: int) -> bool:
    """Whether a shape element provably equals dim `axis` of `value`."""
    if isinstance(element, int):
        return dims(value) is not None and dims(value)[axis] == element
    return element is not None and same_dim(element[1], element[2], value, axis)


# -- shared by several passes: dims, RNNs, GridSample settings, pool windows ----------------------


def parse_dim_spec(model: ir.Model, spec: dict[str, str]) -> list[tuple[ir.Value, int, str]]:
    inputs = {v.name: v for v in model.graph.inputs}
    out = []
    for key, value in spec.items():
        name, sep, axis = key.rpartition(".")
        if not sep or not axis.lstrip("-").isdigit():
            raise OcrgraftError(f"bad dim '{key}': expected INPUT.AXIS, e.g. x.0")
        if name not in inputs:
            raise OcrgraftError(f"no input '{name}' (inputs: {', '.join(inputs)})")
        shape = inputs[name].shape
        if shape is None:
            raise OcrgraftError(f"input '{name}' has no declared shape")
        axis = int(axis)
        if not -len(shape) <= axis < len(shape):
            raise OcrgraftError(f"input '{name}' has rank {len(shape)}; no axis {axis}")
        out.append((inputs[name], axis % len(shape), value))
    return out


def replace_symbol(model: ir.Model, old: ir.SymbolicDim, new) -> None:
    """Replace a named dim everywhere it appears (other inputs, outputs, intermediates)."""
    if not old.value:
        return
    values = list(model.graph.inputs) + list(model.graph.outputs)
    values += [v for node in ir.traversal.RecursiveGraphIterator(model.graph) for v in node.outputs]
    for value in values:
        if value.shape is not None and any(
            not isinstance(d, int) and d.value == old.value for d in value.shape
        ):
            value.shape = ir.Shape(
                [new if (not isinstance(d, int) and d.value == old.value) else d for d in value.shape]
            )


def set_dim(value: ir.Value, axis: int, new) -> None:
    dims = list(value.shape)
    dims[axis] = new
    value.shape = ir.Shape(dims)


RNNS = ("LSTM", "GRU", "RNN")


LINEAR, NEAREST = ("bilinear", "linear"), ("nearest",)


def gridsample_settings(node: ir.Node) -> tuple[str, str, int]:
    mode = node.attributes.get_string("mode", "bilinear")
    padding = node.attributes.get_string("padding_mode", "zeros")
    align = node.attributes.get_int("align_corners", 0)
    return mode, padding, align


POOLS = ("AveragePool", "MaxPool")


def pool_window(node: ir.Node, n: int) -> tuple[list[int], list[int], list[int], list[int], int] | None:
    """kernel, strides, pads, dilations, ceil_mode of an n-D pool; None for auto_pad SAME_*."""
    kernel = ints(node, "kernel_shape")
    if kernel is None or len(kernel) != n:
        return None
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    pads = ints(node, "pads", [0] * 2 * n)
    if node.attributes.get_string("auto_pad", "NOTSET") == "VALID":
        pads = [0] * 2 * n
    return (
        kernel,
        ints(node, "strides", [1] * n),
        pads,
        ints(node, "dilations", [1] * n),
        node.attributes.get_int("ceil_mode", 0),
    )


def pool_indices_unused(node: ir.Node) -> bool:
    return len(node.outputs) < 2 or not (node.outputs[1].uses() or node.outputs[1].is_graph_output())
