"""pool-to-reduce: pools whose window spans whole static axes become reductions."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.passes._edit import (
    POOLS,
    Editor,
    dims,
    pool_indices_unused,
    pool_window,
    remove_unused,
)
from ocrgraft.passes.base import Pass, register


@register
class PoolToReduce(Pass):
    """AveragePool/MaxPool windows that span whole static axes become ReduceMean/ReduceMax; 1x1 pools are
    removed.

    Exporters bake adaptive pooling into a kernel as large as the feature map (AdaptiveAvgPool2d((None, 1))
    in text recognizers). A reduction states what is meant and has no kernel-size limit (Ascend: 255
    elements). A pool whose window is a single element (DTRB's pool at image height 32) is an identity and
    is removed."""

    name = "pool-to-reduce"
    needs_shapes = refresh_shapes = True

    def applies(self, model: ir.Model) -> bool:
        return any(n.op_type in POOLS for n in model.graph)

    def rewrite(self, model: ir.Model) -> int:
        edit, count = Editor(model, self.name), 0
        for node in list(model.graph):
            if node.op_type not in POOLS or node.domain or not pool_indices_unused(node):
                continue
            x, shape = node.inputs[0], dims(node.inputs[0])
            win = pool_window(node, len(shape) - 2) if shape and len(shape) > 2 else None
            if win is None:
                continue
            kernel, strides, pads, dilations, _ = win
            if any(pads) or any(d != 1 for d in dilations):
                continue
            axes, plain = [], True
            for axis, (k, s, size) in enumerate(zip(kernel, strides, shape[2:]), start=2):
                if k == 1 and (s == 1 or size == 1):
                    continue
                if size is not None and k == size:
                    axes.append(axis)
                else:
                    plain = False
            if not plain:
                continue
            edit.at(node)
            if axes:
                op = "ReduceMean" if node.op_type == "AveragePool" else "ReduceMax"
                edit.replace(node.outputs[0], edit.reduce(op, x, axes, keepdims=1))
            else:
                edit.replace(node.outputs[0], x)
            remove_unused(model.graph, [node])
            count += 1
        return count
