"""Naming and fixing input dimensions: `rename-dims(x.0=batch)`, `fix-dims(x.0=1)`."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.passes.base import Pass, register


def _parse_dims(model: ir.Model, spec: dict[str, str]) -> list[tuple[ir.Value, int, str]]:
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


def _replace_symbol(model: ir.Model, old: ir.SymbolicDim, new) -> None:
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


def _set_dim(value: ir.Value, axis: int, new) -> None:
    dims = list(value.shape)
    dims[axis] = new
    value.shape = ir.Shape(dims)


@register
class RenameDims(Pass):
    """Give dynamic input dims readable names (e.g. batch, width) that TensorRT profiles and reports use."""

    name = "rename-dims"

    def __init__(self, **dims: str):
        super().__init__()
        self.dims = dims

    def args(self) -> dict[str, str]:
        return dict(self.dims)

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        for value, axis, new_name in _parse_dims(model, self.dims):
            old = value.shape[axis]
            if isinstance(old, int):
                raise OcrgraftError(
                    f"input '{value.name}' dim {axis} is fixed at {old}; only dynamic dims can be named"
                )
            if old.value == new_name:
                continue
            _replace_symbol(model, old, new_name)
            if value.shape[axis] != new_name:
                _set_dim(value, axis, new_name)
            count += 1
        return count


@register
class FixDims(Pass):
    """Fix dynamic input dims to numbers (e.g. batch 1) for targets or tools that need static shapes."""

    name = "fix-dims"

    def __init__(self, **dims: str):
        super().__init__()
        for key, value in dims.items():
            if not str(value).isdigit() or int(value) <= 0:
                raise OcrgraftError(f"fix-dims: {key}={value} is not a positive integer")
        self.dims = {k: int(v) for k, v in dims.items()}

    def args(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.dims.items()}

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        for value, axis, size in _parse_dims(model, self.dims):
            old = value.shape[axis]
            if isinstance(old, int):
                if old != size:
                    raise OcrgraftError(
                        f"input '{value.name}' dim {axis} is already fixed at {old}, not {size}"
                    )
                continue
            _replace_symbol(model, old, size)
            _set_dim(value, axis, size)
            count += 1
        return count
