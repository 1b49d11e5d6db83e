"""fix-dims: fixing input dimensions to numbers, `fix-dims(x.0=1)`."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.passes._edit import (
    parse_dim_spec,
    replace_symbol,
    set_dim,
)
from ocrgraft.passes.base import Pass, register


@register
class FixDims(Pass):
    """Fix dynamic input dims to numbers (e.g. batch 1) for targets or tools that need static shapes."""

    name = "fix-dims"
    usage = "INPUT.AXIS=SIZE, ... e.g. fix-dims(x.0=1)"

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
        for value, axis, size in parse_dim_spec(model, self.dims):
            old = value.shape[axis]
            if isinstance(old, int):
                if old != size:
                    raise OcrgraftError(
                        f"input '{value.name}' dim {axis} is already fixed at {old}, not {size}"
                    )
                continue
            replace_symbol(model, old, size)
            set_dim(value, axis, size)
            count += 1
        return count
