"""infer-shapes: fresh shape inference: every intermediate shape is forgotten and inferred afresh.

Exporters leave stale shape annotations (torch.export declares a fixed sequence length on a dynamic
LSTM output), and simplifiers that trust them fold wrong constants."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.core.graph import (
    infer_shapes_fresh,
)
from ocrgraft.passes.base import Pass, register


@register
class InferShapes(Pass):
    """Infer all intermediate and output shapes afresh from the inputs, dropping stale annotations."""

    name = "infer-shapes"

    def rewrite(self, model: ir.Model) -> int:
        return infer_shapes_fresh(model)
