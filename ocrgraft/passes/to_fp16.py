"""to-fp16: FP16 with an FP32 keep-list and activation-range checks on sample inputs.

It reads the ONNX op schemas to decide which inputs may change type, so the result stays valid ONNX
that ONNX Runtime checks like any other stage."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnx_ir as ir

from ocrgraft.core.compare import Tolerance
from ocrgraft.core.graph import (
    op_schema,
    opset_of,
    schema_allows,
    schema_is_var,
    schema_type_str,
)
from ocrgraft.core.modelio import to_proto
from ocrgraft.core.precision import node_key, read_keep_list
from ocrgraft.core.runner import Runner
from ocrgraft.passes._edit import (
    Editor,
    const_array,
    remove_unused_values,
)
from ocrgraft.passes.base import Pass, register

log = logging.getLogger("ocrgraft.passes")


F16_MAX, F16_TINY = 65504.0, 2.0**-24


F16_ACTIVATION_LIMIT = (
    F16_MAX / 2
)  # headroom for what a float16 kernel computes between its inputs and outputs


def _transpose_matmul(node: ir.Node) -> bool:
    """A Transpose feeding a MatMul, or a MatMul fed by a Transpose."""
    if node.op_type == "Transpose":
        return any(use.node.op_type == "MatMul" for use in node.outputs[0].uses())
    return node.op_type == "MatMul" and any(
        v is not None and v.producer() is not None and v.producer().op_type == "Transpose"
        for v in node.inputs
    )


@register
class ToFp16(Pass):
    """Convert float32 weights and compute to float16; listed op types and nodes whose constants or sample
    activations overflow float16 stay float32.

    Inputs and outputs stay float32 (Casts at the borders). `keep` lists op types to leave in float32,
    joined by '+', e.g. to-fp16(keep=Softmax+ReduceMean), or a precision.json keep-list of node names
    (to-fp16(keep=precision.json)); GridSample and Range are kept by default since
    they carry coordinates. A node reading a constant beyond float16's range (|x| > 65504, or non-zero
    below 2^-24) stays float32. Checked against the float32 model within a 1e-2 tolerance.

    Activations: given sample inputs (`samples`, a list of {input name: array}; the Pipeline hands this
    pass its stage's test inputs at min / opt / max), the float32 model runs once per sample in ONNX
    Runtime with every float32 value exposed, and any node that reads or writes a value whose largest
    finite |x| exceeds F16_MAX / 2 (32752, half of float16's range, as headroom for what a kernel computes
    inside) stays float32, with its large inputs and outputs. Elements already inf or nan in float32 are
    left out of the measure: float16 carries them the same way. The check only knows the samples' range;
    real inputs beyond it need a keep-list. Without samples (the pass called on its own) only constants
    are checked. `kept_for_range` names the nodes the last run kept for their activations."""

    name = "to-fp16"
    needs_shapes = refresh_shapes = True  # the element type of every value is needed
    tolerance = Tolerance(atol=1e-2, rtol=1e-2)
    DEFAULT_KEEP = ("GridSample", "Range")
    uses_samples = True  # the Pipeline sets `samples` to the stage's test inputs before running it

    def __init__(self, keep: str = "", *, samples: list[dict[str, np.ndarray]] | None = None):
        super().__init__()
        self.keep = tuple(k.strip() for k in keep.replace(",", "+").split("+") if k.strip())
        # a precision.json among them: its nodes (by name) stay float32, the format every target reads
        self.keep_nodes = {n for k in self.keep if k.endswith(".json") for n in read_keep_list(k)}
        if samples is not None and not isinstance(samples, (list, tuple)):
            raise TypeError("samples must be a list of {input name: array} dicts")
        self.samples = samples
        self.kept_for_range: list[str] = []

    def args(self) -> dict[str, str]:
        return {"keep": "+".join(self.keep)} if self.keep else {}

    def rewrite(self, model: ir.Model) -> int:
        opset, graph = opset_of(model), model.graph
        edit, keep = Editor(model, self.name), set(self.keep) | set(self.DEFAULT_KEEP)
        self.kept_for_range = []
        hot = self._overflowing_nodes(model) if self.samples else set()
        halves: set[int] = set()  # ids of the values this pass turned into float16
        captured = {
            id(v)
            for n in ir.traversal.RecursiveGraphIterator(graph)
            if n.graph is not graph
            for v in n.inputs
            if v is not None
        }  # read inside If/Loop bodies: left float32
        to16: dict[int, ir.Value] = {}
        to32: dict[int, ir.Value] = {}
        replaced, count = [], 0
        for node in list(graph):
            ins, outs = self._plan(node, opset, keep, halves)
            if id(node) in hot or any(id(node.outputs[j]) in captured for j in outs):
                ins, outs = set(), set()
            edit.at(node)
            for i, value in enumerate(node.inputs):
                if value is None or value.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16):
                    continue
                if i in ins and value.dtype == ir.DataType.FLOAT:
                    node.replace_input_with(i, self._half(edit, value, to16))
                    replaced.append(value)
                elif i not in ins and id(value) in halves:
                    if id(value) not in to32:
                        to32[id(value)] = edit.op("Cast", [value], {"to": ir.DataType.FLOAT})
                        to32[id(value)].dtype = ir.DataType.FLOAT
                    node.replace_input_with(i, to32[id(value)])
            for j in outs:
                node.outputs[j].dtype = ir.DataType.FLOAT16
                halves.add(id(node.outputs[j]))
            if ins or outs:
                self._retype_attributes(node)
                count += 1
        for k, out in enumerate(list(graph.outputs)):
            if id(out) in halves:  # the model's outputs stay float32
                cast = ir.node("Cast", [out], {"to": ir.DataType.FLOAT})
                graph.append(cast)
                name, out.name = out.name, edit.unique(f"{out.name}.fp16")
                cast.outputs[0].name, cast.outputs[0].dtype, cast.outputs[0].shape = (
                    name,
                    ir.DataType.FLOAT,
                    out.shape,
                )
                graph.outputs[k] = cast.outputs[0]
        remove_unused_values(graph, replaced)
        return count

    def _overflowing_nodes(self, model: ir.Model) -> set[int]:
        """Ids of the main-graph nodes that read or write a float32 value beyond F16_ACTIVATION_LIMIT on
        the samples; the model itself is not touched (a serialized copy runs)."""
        graph = model.graph
        proto = to_proto(model)
        exposed = {o.name for o in proto.graph.output}
        for node in graph:
            for value in node.outputs:
                if value.name and value.dtype == ir.DataType.FLOAT and value.name not in exposed:
                    exposed.add(value.name)
                    proto.graph.output.append(
                        onnx.helper.make_tensor_value_info(value.name, onnx.TensorProto.FLOAT, None)
                    )
        runner = Runner(
            proto.SerializeToString(),
            what="the float32 model with every value exposed (to-fp16's activation check)",
        )
        del proto
        inputs = {v.name for v in graph.inputs}
        peaks: dict[str, float] = {}
        for sample in self.samples:
            feeds = {k: np.asarray(v) for k, v in sample.items() if k in inputs}
            for name, array in {**feeds, **runner.run(feeds)}.items():
                if array.dtype != np.float32 or not array.size:
                    continue
                mag = np.abs(array)
                peaks[name] = max(peaks.get(name, 0.0), float(mag.max(initial=0.0, where=np.isfinite(mag))))
        large = {name for name, peak in peaks.items() if peak > F16_ACTIVATION_LIMIT}
        hot = [n for n in graph if any(v is not None and v.name in large for v in (*n.inputs, *n.outputs))]
        self.kept_for_range = [n.name or n.op_type for n in hot]
        if hot:
            log.info(
                "to-fp16: %d node(s) stay float32, their activations exceed %g on the samples: %s",
                len(hot),
                F16_ACTIVATION_LIMIT,
                ", ".join(self.kept_for_range[:10]) + (" ..." if len(hot) > 10 else ""),
            )
        return {id(n) for n in hot}

    def _plan(self, node: ir.Node, opset: int, keep: set[str], halves: set[int]) -> tuple[set[int], set[int]]:
        """Input and output indices that become float16 if the node is converted; empty if it is kept."""
        subgraphs = any(
            a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()
        )
        if node.domain or node.op_type in keep or node.op_type == "Constant" or subgraphs:
            return set(), set()
        if self.keep_nodes and node_key(node) in self.keep_nodes:
            return set(), set()
        if node.op_type == "Cast":  # only int -> float casts move; float -> int keeps its precision
            floating = node.inputs[0].dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE)
            return (
                (set(), {0})
                if node.attributes.get_int("to") == ir.DataType.FLOAT and not floating
                else (set(), set())
            )
        if _transpose_matmul(node):
            return set(), set()  # ONNX Runtime 1.31's CPU Transpose+MatMul fusion crashes on float16
        schema = op_schema(node, opset)
        if schema is None:
            return set(), set()
        varying: dict[str, set[int]] = {"in": set(), "out": set()}
        for kind, values in (("in", node.inputs), ("out", node.outputs)):
            for i, value in enumerate(values):
                if value is None or (value.dtype != ir.DataType.FLOAT and id(value) not in halves):
                    continue
                type_str = schema_type_str(schema, i, kind == "out")
                if schema_is_var(schema, type_str):
                    if not schema_allows(schema, type_str, "tensor(float16)"):
                        return set(), set()
                    varying[kind].add(i)
        for i in varying["in"]:
            array = const_array(node.inputs[i])
            if array is not None and array.size:
                mag = np.abs(array[np.isfinite(array)])
                if (mag > F16_MAX).any() or ((mag > 0) & (mag < F16_TINY)).any():
                    return set(), set()  # the constant would overflow or vanish in float16
        if not varying["out"] and not any(id(node.inputs[i]) in halves for i in varying["in"]):
            return set(), set()  # reads float32 and makes no floats: nothing to gain
        return varying["in"], varying["out"]

    @staticmethod
    def _half(edit: Editor, value: ir.Value, cache: dict[int, ir.Value]) -> ir.Value:
        if id(value) not in cache:
            array = const_array(value)
            if array is not None:
                cache[id(value)] = edit.const(array.astype(np.float16), f"{value.name}.fp16")
            else:
                cache[id(value)] = edit.op("Cast", [value], {"to": ir.DataType.FLOAT16})
                cache[id(value)].dtype = ir.DataType.FLOAT16
        return cache[id(value)]

    @staticmethod
    def _retype_attributes(node: ir.Node) -> None:
        if node.op_type == "Cast":
            node.attributes["to"] = ir.convenience.convert_attribute("to", ir.DataType.FLOAT16)
        elif node.op_type == "ConstantOfShape" and node.attributes.get_tensor("value") is not None:
            fill = node.attributes.get_tensor("value").numpy().astype(np.float16)
            node.attributes["value"] = ir.convenience.convert_attribute("value", ir.tensor(fill))
