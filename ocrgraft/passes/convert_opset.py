"""convert-opset: opset conversion with the ONNX version converter, refusing clearly where it cannot."""

from __future__ import annotations

import re

import onnx
import onnx.version_converter
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.graph import (
    opset_of,
)
from ocrgraft.passes.base import Pass, register


def missing_ops(model: ir.Model, opset: int) -> dict[str, int]:
    """Default-domain op types that have no definition at `opset`, with their node counts."""
    missing: dict[str, int] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.domain:
            continue
        try:
            onnx.defs.get_schema(node.op_type, opset, "")
        except onnx.defs.SchemaError:
            missing[node.op_type] = missing.get(node.op_type, 0) + 1
    return missing


def _infers_strictly(proto: onnx.ModelProto) -> bool:
    del proto.graph.value_info[:]
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception:
        return False
    return True


def _release_ir_version(opset: int) -> int:
    return min(ir_version for _, ir_version, op, *_ in onnx.helper.VERSION_TABLE if op >= opset)


def convert_opset(model: ir.Model, opset: int) -> bool:
    """Convert the default-domain opset of `model` in place; False if it already is `opset`.

    The version converter has no adapter for some ops whose newer versions only widened types or added
    unused attributes (Shape 15, Identity 16...); nodes of such an op that are valid as they stand at the
    target opset are set aside during the conversion and kept unchanged. Anything else is refused."""
    current = opset_of(model)
    if current == opset:
        return False
    missing = missing_ops(model, opset)
    if missing:
        what = ", ".join(f"{op} ({n} node{'s' * (n > 1)})" for op, n in sorted(missing.items()))
        hint = " (decompose-gridsample replaces GridSample)" if "GridSample" in missing else ""
        raise OcrgraftError(
            f"convert-opset: cannot convert opset {current} -> {opset}: {what} "
            f"not defined at opset {opset}{hint}"
        )
    aside: set[str] = set()
    strict = _infers_strictly(
        ir.serde.serialize_model(model)
    )  # custom ops may not; then only check structure
    while True:
        proto = ir.serde.serialize_model(model)
        del proto.graph.value_info[:]  # stale or partial annotations; the converter infers afresh
        _set_aside(proto, aside, opset)
        try:
            converted = onnx.version_converter.convert_version(proto, opset)
            _set_aside(converted, aside, undo=True)
            del converted.graph.value_info[:]
            onnx.checker.check_model(converted)
            if strict:
                onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
            break
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            match = re.search(r"No Adapter (?:From|To) Version \$\d+ for (\w+)", reason)
            op = match.group(1) if match else None
            if op is None or op in aside or not _valid_as_is(proto, op, opset):
                raise OcrgraftError(
                    f"convert-opset: the ONNX version converter cannot convert opset {current} -> "
                    f"{opset}: {reason}"
                ) from exc
            aside.add(op)
    new = ir.serde.deserialize_model(converted)
    model.graph = new.graph
    if opset < current:
        model.ir_version = min(model.ir_version, max(_release_ir_version(opset), 3))
    return True


ASIDE = "ocrgraft.aside"


def _proto_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _proto_nodes(sub)


def _set_aside(proto: onnx.ModelProto, ops: set[str], opset: int | None = None, undo: bool = False) -> None:
    """Move nodes of `ops` to a private domain the converter skips (or back), dropping attributes
    that the target opset does not know and that hold their default value anyway."""
    if not ops:
        return
    for node in _proto_nodes(proto.graph):
        if node.op_type in ops and node.domain == ("" if not undo else ASIDE):
            if not undo:
                _drop_new_defaults(node, opset)
            node.domain = ASIDE if not undo else ""
    imports = [o for o in proto.opset_import if o.domain != ASIDE]
    del proto.opset_import[:]
    proto.opset_import.extend(imports + ([] if undo else [onnx.helper.make_opsetid(ASIDE, 1)]))


def _drop_new_defaults(node: onnx.NodeProto, opset: int) -> None:
    old = onnx.defs.get_schema(node.op_type, opset, "")
    new = onnx.defs.get_schema(node.op_type, onnx.defs.onnx_opset_version(), "")
    for attr in list(node.attribute):
        spec = new.attributes.get(attr.name)
        if attr.name in old.attributes or spec is None or not spec.default_value.name:
            continue
        if onnx.helper.get_attribute_value(spec.default_value) == onnx.helper.get_attribute_value(attr):
            node.attribute.remove(attr)


def _valid_as_is(proto: onnx.ModelProto, op: str, opset: int) -> bool:
    """Whether every `op` node satisfies the op's schema at `opset` (default-valued new attributes aside)."""
    ctx = onnx.checker.C.CheckerContext()
    ctx.ir_version = proto.ir_version
    ctx.opset_imports = {"": opset}
    for node in _proto_nodes(proto.graph):
        if node.op_type == op and node.domain in ("", ASIDE):
            plain = onnx.NodeProto()
            plain.CopyFrom(node)
            plain.domain = ""
            _drop_new_defaults(plain, opset)
            try:
                onnx.checker.check_node(plain, ctx)
            except onnx.checker.ValidationError:
                return False
    return True


@register
class ConvertOpset(Pass):
    """Convert the model to another ONNX opset with the ONNX version converter, e.g. convert-opset(opset=11).

    Vendor stacks pin opsets (Ascend samples use 11; TensorRT 10.13 mis-computes GridSample at 20 but not
    at 18). An op without a definition at the target opset, or one the converter cannot adapt, stops the
    run with a message naming it; the result is checked in ONNX Runtime like any exact stage."""

    name = "convert-opset"

    def __init__(self, opset: int | str):
        super().__init__()
        if not str(opset).isdigit() or not 7 <= int(opset) <= onnx.defs.onnx_opset_version():
            raise OcrgraftError(
                f"convert-opset: opset={opset} is not an ONNX opset between 7 and "
                f"{onnx.defs.onnx_opset_version()}"
            )
        self.opset = int(opset)

    def args(self) -> dict[str, str]:
        return {"opset": str(self.opset)}

    def rewrite(self, model: ir.Model) -> int:
        return int(convert_opset(model, self.opset))
