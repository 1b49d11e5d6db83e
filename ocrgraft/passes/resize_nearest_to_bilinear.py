"""resize-nearest-to-bilinear: an opt-in rewrite that changes the numbers on purpose; reported as such and
never claimed equal."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.passes._edit import (
    const_array,
    set_attr,
)
from ocrgraft.passes.base import CHANGES, Pass, register


def _spatial_only(node: ir.Node) -> bool:
    """Whether a Resize scales only H and W of a 4-D tensor (scales or sizes known as constants)."""
    scales = const_array(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    sizes = const_array(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] is not None else None
    if scales is not None and scales.size == 4:
        return bool(scales[0] == 1 and scales[1] == 1)
    if sizes is not None and sizes.size == 4:
        shape = node.inputs[0].shape
        return shape is not None and len(shape) == 4 and list(shape[:2]) == [int(s) for s in sizes[:2]]
    return False


@register
class ResizeNearestToBilinear(Pass):
    """Resize with mode 'nearest' becomes bilinear (half-pixel), for targets whose nearest differs from
    the framework's.

    MMOCR measured DBNet's hmean drop from 0.795 to 0.752 on TensorRT with nearest upsampling and no drop
    after switching the model to bilinear. This changes the model's outputs: only opt in with a model
    trained or validated for bilinear upsampling."""

    name = "resize-nearest-to-bilinear"
    semantics = CHANGES

    def rewrite(self, model: ir.Model) -> int:
        count = 0
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if (
                node.op_type != "Resize"
                or node.domain
                or node.attributes.get_string("mode", "nearest") != "nearest"
            ):
                continue
            if len(node.inputs) < 3 or not _spatial_only(node):
                continue
            set_attr(node, "mode", "linear")
            set_attr(node, "coordinate_transformation_mode", "pytorch_half_pixel")
            node.attributes.pop("nearest_mode", None)
            count += 1
        return count
