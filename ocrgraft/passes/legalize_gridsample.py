"""legalize-gridsample: GridSample legalized for targets that have it (opset 16 spelling, opset raised around
it)."""

from __future__ import annotations

import onnx_ir as ir

from ocrgraft.core.graph import (
    opset_of,
)
from ocrgraft.passes._edit import (
    gridsample_settings,
    set_attr,
)
from ocrgraft.passes.base import Pass, register


@register
class LegalizeGridSample(Pass):
    """Make every GridSample valid for a target that has one: opset >= 16, mode spelled for the opset,
    explicit attributes.

    paddle2onnx writes mode='bilinear' at opset 20, where it is 'linear' (ONNX Runtime refuses the model);
    the Ascend StarNet script grafts a GridSample into an opset-11 graph. Defaults differ between
    frameworks, so padding_mode and align_corners are always written out."""

    name = "legalize-gridsample"

    def rewrite(self, model: ir.Model) -> int:
        nodes = [
            n
            for n in ir.traversal.RecursiveGraphIterator(model.graph)
            if n.op_type == "GridSample" and not n.domain
        ]
        if not nodes:
            return 0
        count = 0
        if opset_of(model) < 16:
            _raise_opset_around(model, nodes, 16)  # the graph is rebuilt: collect the nodes again
            nodes = [
                n
                for n in ir.traversal.RecursiveGraphIterator(model.graph)
                if n.op_type == "GridSample" and not n.domain
            ]
            count += 1
        opset = opset_of(model)
        for node in nodes:
            mode, padding, align = gridsample_settings(node)
            mode = (
                {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
                if opset < 20
                else {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
            )
            changed = False
            for key, value in (("mode", mode), ("padding_mode", padding), ("align_corners", align)):
                attr = node.attributes.get(key)
                if attr is None or attr.value != value:
                    set_attr(node, key, value)
                    changed = True
            count += changed
        return count


def _raise_opset_around(model: ir.Model, nodes: list[ir.Node], opset: int) -> None:
    """Convert the rest of the graph to `opset`, with the GridSample nodes set aside meanwhile."""
    from ocrgraft.passes.convert_opset import convert_opset

    for node in nodes:
        node.domain = "ocrgraft.aside"
    model.opset_imports["ocrgraft.aside"] = 1
    try:
        convert_opset(model, opset)
    finally:
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            if node.domain == "ocrgraft.aside":
                node.domain = ""
        model.opset_imports.pop("ocrgraft.aside", None)
