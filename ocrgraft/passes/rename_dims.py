"""rename-dims: naming input dimensions, `rename-dims(x.0=batch)`."""

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
class RenameDims(Pass):
    """Give dynamic input dims readable names (e.g. batch, width) that TensorRT profiles and reports use."""

    name = "rename-dims"
    usage = "INPUT.AXIS=NAME, ... e.g. rename-dims(x.0=batch,x.3=width)"

    def __init__(self, **dims: str):
        super().__init__()
        self.dims = dims

    def args(self) -> dict[str, str]:
        return dict(self.dims)

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        for value, axis, new_name in parse_dim_spec(model, self.dims):
            old = value.shape[axis]
            if isinstance(old, int):
                raise OcrgraftError(
                    f"input '{value.name}' dim {axis} is fixed at {old}; only dynamic dims can be named"
                )
            if old.value == new_name:
                continue
            replace_symbol(model, old, new_name)
            if value.shape[axis] != new_name:
                set_dim(value, axis, new_name)
            count += 1
        return count
