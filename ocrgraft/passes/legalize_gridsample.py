"""legalize-gridsample: GridSample legalized for targets that have it (opset 16 spelling, opset raised around
it), the attributes as a rewrite rule.

Pattern:  y = GridSample(x, grid)                      mode spelled for another opset, or a default unwritten
Rewrite:  y = GridSample(x, grid, mode, padding_mode, align_corners)   spelled for the model's opset
Why:      paddle2onnx writes mode='bilinear' at opset 20, where it is 'linear' (ONNX Runtime refuses the
          model); the Ascend StarNet script grafts a GridSample into an opset-11 graph, so the rest of the
          graph is first converted to opset 16 (a whole-graph step, not a rule). Defaults differ between
          frameworks, so padding_mode and align_corners are always written out. ONNX Runtime's contrib
          GridSample (com.microsoft) is left as it is, and named (--explain).
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.graph import (
    opset_of,
)
from ocrgraft.passes._edit import (
    gridsample_settings,
)
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass


class GridSampleAttributes(Rule):
    def pattern(self, op, x, grid):
        return op.GridSample(x, grid, _allow_other_attributes=True)

    def check(self, context, x, grid, **_) -> MatchResult:
        result = MatchResult()
        node = context.root
        if node.domain:
            return self.done(result)
        mode, padding, align = gridsample_settings(node)
        mode = (
            {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
            if opset_of(context.model) < 20
            else {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
        )
        written = {}  # what differs from, or is missing in, the node's attributes
        for key, value in (("mode", mode), ("padding_mode", padding), ("align_corners", align)):
            attr = node.attributes.get(key)
            if attr is None or attr.value != value:
                written[key] = value
        if not written:
            return self.done(result)
        self._plan = (node, written)
        return result

    def rewrite(self, op, x, grid, **_):
        node, written = self._plan
        out = op.GridSample(x, grid, _name=node.name, **{**node.attributes, **written})
        out.producer().doc_string = node.doc_string  # the same node, its attributes written out
        out.producer().metadata_props.update(node.metadata_props)
        return out


class ContribGridSample(Rule):
    """Never rewrites: says why ONNX Runtime's contrib GridSample is not legalized."""

    def pattern(self, op, x, grid):
        return op.GridSample(x, grid, _domain="com.microsoft", _allow_other_attributes=True)

    def check(self, context, x, grid, **_) -> MatchResult:
        return MatchResult().fail(
            "it is ONNX Runtime's contrib GridSample (domain com.microsoft), not ONNX's; "
            "this pass leaves it as it is"
        )

    def rewrite(self, op, x, grid, **_):
        raise AssertionError("the check always refuses")


@register
class LegalizeGridSample(RulePass):
    """Make every GridSample valid for a target that has one: opset >= 16, mode spelled for the opset,
    explicit attributes.

    paddle2onnx writes mode='bilinear' at opset 20, where it is 'linear' (ONNX Runtime refuses the model);
    the Ascend StarNet script grafts a GridSample into an opset-11 graph. Defaults differ between
    frameworks, so padding_mode and align_corners are always written out."""

    name = "legalize-gridsample"
    rules = (GridSampleAttributes, ContribGridSample)

    def rewrite(self, model: ir.Model) -> int:
        nodes = [
            n
            for n in ir.traversal.RecursiveGraphIterator(model.graph)
            if n.op_type == "GridSample" and not n.domain
        ]
        if not nodes:
            return super().rewrite(model) if self.explain else 0  # a contrib GridSample is named
        count = 0
        if opset_of(model) < 16:  # a whole-graph step: the graph is rebuilt, then the rules run on it
            _raise_opset_around(model, nodes, 16)
            count += 1
        return count + super().rewrite(model)


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
