"""Graph analysis every layer shares: walking all nodes (subgraphs included), the model's opset, and
shape inference that forgets every intermediate shape and infers it afresh from the inputs.

Exporters leave stale shape annotations (torch.export declares a fixed sequence length on a dynamic
LSTM output), and anything that trusts them folds wrong constants; here nothing stale survives.
"""

from __future__ import annotations

import logging
import operator

import onnx
import onnx_ir as ir


def all_nodes(model: ir.Model | ir.Graph) -> list[ir.Node]:
    """Every node, those in If/Loop bodies included, as a list (passes walk it before and after)."""
    nodes = list(model.graph if isinstance(model, ir.Model) else model)
    if _STANDARD.issuperset(map(_domain, nodes)) and _SUBGRAPH_OPS.isdisjoint(map(_op_type, nodes)):
        return nodes  # the usual case, settled without a Python-level loop: it runs after every pass
    for node in nodes:  # the list grows by each body found, which is scanned in turn
        if node.op_type not in _SUBGRAPH_OPS and node.domain in ("", "ai.onnx"):
            continue  # no standard op but these holds a graph (a custom domain's op may)
        for attr in node.attributes.data.values():
            if attr.type is ir.AttributeType.GRAPH:
                nodes.extend(attr.value)
            elif attr.type is ir.AttributeType.GRAPHS:
                for graph in attr.value:
                    nodes.extend(graph)
    return nodes


_SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan"})
_STANDARD = frozenset({"", "ai.onnx"})
_op_type, _domain = operator.attrgetter("op_type"), operator.attrgetter("domain")


def opset_of(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))


def _computed_values(model: ir.Model):
    for node in model.graph:
        yield from node.outputs


def infer_shapes_fresh(model: ir.Model) -> int:
    """Re-infer every intermediate and output shape from the inputs; returns how many changed.

    Inference is a function of the graph alone, so a graph unchanged since the last fresh inference
    (same nodes, wiring, attributes, constants and input shapes) keeps its shapes and costs nothing."""
    old = model.meta.get(_FRESH)
    if old is not None and _same_state(old, _graph_state(model)):
        return 0
    computed = list(_computed_values(model))
    before = [v.shape for v in computed]
    declared = {id(v): v.shape for v in model.graph.outputs}
    graph_inputs = {id(v) for v in model.graph.inputs}
    for value in computed:
        if id(value) not in graph_inputs:
            value.shape = None
    _infer(model)
    for value in model.graph.outputs:
        value.shape = _merge_output_shape(declared.get(id(value)), value.shape)
    model.meta[_FRESH] = _graph_state(model)
    return sum(1 for v, old in zip(computed, before) if old != v.shape)


_FRESH = "ocrgraft.fresh_shapes"


def _graph_state(model: ir.Model) -> tuple[list, list]:
    """What inference reads and writes: objects compared by identity (held, so no id is reused; the
    annotations too, so shapes someone else put back count as a change) and plain values."""
    graph = model.graph
    objects: list = [*graph.inputs, None, *graph.outputs, None]
    for value in graph.initializers.values():
        objects += (value, value.const_value)
    for node in all_nodes(model):
        objects += (node, node.inputs, *node.attributes.data.values(), None)
        for value in node.outputs:
            objects += (value.shape, value.type)
    values = [
        dict(model.opset_imports),
        list(model.functions),
        *(str(v.type) + str(v.shape) for v in graph.inputs),
    ]
    return objects, values


def _same_state(old, new) -> bool:
    return old[1] == new[1] and len(old[0]) == len(new[0]) and all(a is b for a, b in zip(old[0], new[0]))


# ONNX shape inference reads the values of integer inputs (shapes, axes, sizes) and of these ops'
# float inputs (scales, bounds); only those constants are sent with data, the rest as typed inputs.
_DATA_LIMIT = 1024
_READS_FLOATS = frozenset({"Resize", "Upsample", "Range", "OneHot"})
_GRAPH_ATTRS = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)


def _infer(model: ir.Model) -> None:
    """ONNX shape inference (data propagation on) written back onto the model's values.

    The proto sent to ONNX carries the nodes, the inputs and the constants inference reads, but no
    annotations and no weights; results are matched by name with a dict: one linear pass each way."""
    graph = model.graph
    proto = onnx.ModelProto(ir_version=model.ir_version)
    for domain, version in model.opset_imports.items():
        proto.opset_import.add(domain=domain, version=version)
    for function in model.functions.values():
        proto.functions.append(ir.serde.serialize_function(function))
    g = proto.graph
    listed = {id(v) for v in graph.inputs}
    for value in graph.inputs:
        ir.serde.serialize_value_into(g.input.add(), value)
    types: dict[tuple, onnx.TypeProto] = {}
    for name, value in graph.initializers.items():
        tensor = value.const_value
        if tensor is None:
            continue
        if value.shape is None or value.dtype is None:  # passes read initializer shapes too
            value.shape, value.dtype = tensor.shape, tensor.dtype
        if id(value) not in listed:
            key = (tensor.dtype, tuple(tensor.shape))
            if key not in types:
                types[key] = onnx.helper.make_tensor_type_proto(tensor.dtype.value, key[1])
            g.input.add(name=name).type.CopyFrom(types[key])
        if tensor.nbytes <= _DATA_LIMIT and (
            tensor.dtype.is_integer() or any(use.node.op_type in _READS_FLOATS for use in value.uses())
        ):
            ir.serde.serialize_tensor_into(g.initializer.add(), tensor)
            g.initializer[-1].name = name
    nested = False
    for node in graph:
        ir.serde.serialize_node_into(g.node.add(), node)
        nested = nested or any(a.type in _GRAPH_ATTRS for a in node.attributes.data.values())
    for value in graph.outputs:
        info = g.output.add(name=value.name)
        if value.type is not None:
            ir.serde.serialize_type_into(info.type, value.type)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            proto, check_type=True, strict_mode=False, data_prop=True
        )
    except Exception as exc:  # noqa: BLE001  (inference is best effort: shapes stay unknown)
        logging.getLogger("ocrgraft.passes").warning("shape inference failed: %s", exc)
        return
    if nested:  # values inside If/Loop bodies: match graph by graph (rare in OCR models)
        _merge_graphs(model, ir.serde.deserialize_model(inferred))
        return
    values = {v.name: v for v in _computed_values(model) if v.name}
    shapes: dict[tuple, ir.Shape] = {}  # frozen, so values with equal shapes can share one
    for infos in (inferred.graph.value_info, inferred.graph.output):
        for info in infos:
            value = values.get(info.name)
            if value is not None:
                _set_type(value, info.type, shapes)


def _set_type(value: ir.Value, type_proto: onnx.TypeProto, shapes: dict) -> None:
    if type_proto.WhichOneof("value") != "tensor_type":
        shape = ir.serde.deserialize_type_proto_for_shape(type_proto)
        type_ = ir.serde.deserialize_type_proto_for_type(type_proto)
        if shape is not None:
            value.shape = shape
        if type_ is not None and value.type != type_:
            value.type = type_
        return
    tensor = type_proto.tensor_type
    if tensor.HasField("shape"):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
        )
        if dims not in shapes:
            shapes[dims] = ir.Shape(dims, frozen=True)
        value.shape = shapes[dims]
    if tensor.elem_type and value.dtype != tensor.elem_type:
        value.dtype = ir.DataType(tensor.elem_type)


def _merge_graphs(model: ir.Model, inferred: ir.Model) -> None:
    for graph, inferred_graph in zip(model.graphs(), inferred.graphs()):
        found = ir.convenience.create_value_mapping(inferred_graph, include_subgraphs=False)
        for name, value in ir.convenience.create_value_mapping(graph, include_subgraphs=False).items():
            other = found.get(name)
            if other is not None and other.shape is not None:
                value.shape = other.shape
            if other is not None and other.type is not None and value.type != other.type:
                value.type = other.type


def _merge_output_shape(declared: ir.Shape | None, inferred: ir.Shape | None) -> ir.Shape | None:
    """A proven number wins; a declared number that inference cannot prove gives way to the inferred
    (unknown) dim; a declared dim name is kept. Without an inferred rank the declaration stands."""
    if inferred is None or declared is None or len(declared) != len(inferred):
        return inferred if declared is None else declared
    dims = []
    for d, i in zip(declared, inferred):
        if isinstance(i, int):
            dims.append(i)
        elif not isinstance(d, int) and d.value:
            dims.append(d)
        else:
            dims.append(i if i.value else None)
    return ir.Shape(dims)


# -- counting and ONNX op schemas ---------------------------------------------------------------------


def count_nodes(model: ir.Model, op_type: str | None = None) -> int:
    nodes = all_nodes(model)
    return len(nodes) if op_type is None else sum(1 for n in nodes if n.op_type == op_type)


def op_schema(node: ir.Node, opset: int):
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return None


def schema_type_str(schema, index: int, outputs: bool = False) -> str | None:
    params = schema.outputs if outputs else schema.inputs
    if index < len(params):
        return params[index].type_str
    if params and params[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        return params[-1].type_str
    return None


def schema_is_var(schema, type_str: str | None) -> bool:
    return any(c.type_param_str == type_str for c in schema.type_constraints)


def schema_allows(schema, type_str: str | None, tensor_type: str) -> bool:
    for c in schema.type_constraints:
        if c.type_param_str == type_str:
            return tensor_type in c.allowed_type_strs
    return type_str == tensor_type
