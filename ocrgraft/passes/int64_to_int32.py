"""int64-to-int32: INT64 constants to INT32 with range checks.

It reads the ONNX op schemas to decide which inputs may change type, so the result stays valid ONNX
that ONNX Runtime checks like any other stage."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.graph import (
    op_schema,
    opset_of,
    schema_allows,
    schema_is_var,
    schema_type_str,
)
from ocrgraft.passes._edit import (
    Editor,
    const_array,
    remove_unused_values,
)
from ocrgraft.passes.base import Pass, register

I32 = np.iinfo(np.int32)


SLICE_BOUNDS = (1, 2)  # Slice starts, ends: out-of-range values only mean "from/to the end"


def _ints_consts(model: ir.Model):
    """(value, array) for every INT64 constant: initializers and Constant node outputs, subgraphs included."""
    seen = set()
    values = list(model.graph.initializers.values())
    values += [
        n.outputs[0] for n in ir.traversal.RecursiveGraphIterator(model.graph) if n.op_type == "Constant"
    ]
    for value in values:
        array = const_array(value)
        if array is not None and array.dtype == np.int64 and id(value) not in seen:
            seen.add(id(value))
            yield value, array


@register
class Int64ToInt32(Pass):
    """INT64 constants become INT32 where the op accepts it; every INT64 constant is range-checked so no
    cast can clamp.

    TensorRT casts INT64 weights to INT32 itself and clamps values out of range with only a warning;
    Ascend ATC wants INT32 indices. Slice bounds beyond INT32 (torch's 'to the end') are clamped, which is
    exact; any other INT64 constant outside INT32 stops the run with its name."""

    name = "int64-to-int32"

    def rewrite(self, model: ir.Model) -> int:
        self._check_ranges(model)
        opset, edit, count = opset_of(model), Editor(model, self.name), 0
        copies: dict[tuple[int, str], ir.Value] = {}
        replaced = []
        for node in list(model.graph):
            schema = op_schema(node, opset) if not node.domain else None
            if schema is None:
                continue
            groups: dict[str, list[int]] = {}  # inputs that share a type variable change together
            for i, value in enumerate(node.inputs):
                if value is not None:
                    groups.setdefault(schema_type_str(schema, i), []).append(i)
            for type_str, indices in groups.items():
                arrays = [const_array(node.inputs[i]) for i in indices]
                arrays = [a if a is not None and a.dtype == np.int64 else None for a in arrays]
                if all(a is None for a in arrays):
                    continue
                clamp = [node.op_type == "Slice" and i in SLICE_BOUNDS for i in indices]
                fits = [
                    a is not None and (c or a.size == 0 or (a.min() >= I32.min and a.max() <= I32.max))
                    for a, c in zip(arrays, clamp)
                ]
                tied_to_output = any(
                    schema_type_str(schema, j, True) == type_str for j in range(len(node.outputs))
                )
                narrow = (
                    schema_is_var(schema, type_str)
                    and schema_allows(schema, type_str, "tensor(int32)")
                    and not tied_to_output
                    and all(fits)
                )
                for i, array, c in zip(indices, arrays, clamp):
                    if array is None:
                        continue
                    inside = array.size == 0 or (array.min() >= I32.min and array.max() <= I32.max)
                    if not narrow and (inside or not c):
                        continue  # stays INT64; the range check below covers it
                    new = np.clip(array, I32.min, I32.max).astype(np.int32 if narrow else np.int64)
                    key = (id(node.inputs[i]), new.dtype.str)
                    if key not in copies:
                        copies[key] = edit.const(
                            new, (node.inputs[i].name or "int") + (".i32" if narrow else ".clamped")
                        )
                    replaced.append(node.inputs[i])
                    node.replace_input_with(i, copies[key])
                    count += 1
        remove_unused_values(model.graph, replaced)
        return count

    @staticmethod
    def _check_ranges(model: ir.Model) -> None:
        """Refuse before changing anything if an INT64 constant (other than a Slice bound) exceeds INT32."""
        for value, array in _ints_consts(model):
            if not array.size or I32.min <= array.min() <= array.max() <= I32.max:
                continue
            uses = list(value.uses())
            if value.is_graph_output() or not all(
                u.node.op_type == "Slice" and u.idx in SLICE_BOUNDS for u in uses
            ):
                users = (
                    ", ".join(sorted({f"{u.node.op_type} input {u.idx}" for u in uses})) or "a graph output"
                )
                worst = array.max() if array.max() > I32.max else array.min()
                raise OcrgraftError(
                    f"int64-to-int32: constant '{value.name}' ({users}) holds {worst}, outside INT32; "
                    f"a cast to INT32 would change it"
                )
