"""decompose-gridsample: GridSample decomposed into opset-11 operators for targets without it, as a rewrite
rule.

Pattern:  y = GridSample(x, grid)                 4-D, float32, bilinear or nearest, any padding
Rewrite:  y = Transpose(Gather(table(x), index(grid)) weighted ...)   built by `_Sampler`, opset-11 ops only
Why:      GridSample exists only from opset 16 (4-D) and opset 20 (N-D, modes renamed 'linear'/'cubic'); OCR
          rectifiers (TPS in PaddleOCR StarNet/RARE, DTRB) use it with different defaults: Paddle
          align_corners=True with zeros padding, DTRB border padding, torch align_corners=False. A
          GridSample the decomposition cannot reproduce stops the run, or is named (--explain).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.passes._edit import (
    LINEAR,
    NEAREST,
    Editor,
    gridsample_settings,
)
from ocrgraft.passes.base import register
from ocrgraft.passes.rules import Rule, RulePass

PADDINGS = ("zeros", "border", "reflection")


class _Sampler:
    """Builds the decomposition of one GridSample node; the arithmetic follows ONNX Runtime's kernel
    step by step (denormalize, round or floor, reflect, clamp, weight) so results agree to float rounding."""

    def __init__(self, edit: Editor, x: ir.Value, grid: ir.Value, padding: str, align: int):
        self.e, self.x, self.padding, self.align = edit, x, padding, align
        self.floats: dict[float, ir.Value] = {}
        shape = list(x.shape) if x.shape is not None else [None] * 4
        n, _, h, w = [d if isinstance(d, int) else None for d in shape]
        self.shape_of_x = None
        self.n, self.h, self.w = (self._dim(d, i) for d, i in ((n, 0), (h, 2), (w, 3)))
        self.hf, self.wf = self._float(h, self.h), self._float(w, self.w)
        # image as a table: [C, N*H*W]; sample points gather columns -> [C, N, Ho, Wo]
        self.table = edit.op(
            "Reshape", [edit.op("Transpose", [x], {"perm": [1, 0, 2, 3]}), edit.i64([0, -1], "shape")]
        )
        hw = edit.op("Mul", [self.h, self.w])
        base = edit.op("Mul", [edit.op("Range", [edit.i64(0, "zero"), self.n, edit.i64(1, "one")]), hw])
        self.base = edit.op("Reshape", [base, edit.i64([-1, 1, 1], "shape")])  # [N,1,1]: n*H*W
        self.gx = edit.op("Gather", [grid, edit.i64(0, "index")], {"axis": 3})  # [N, Ho, Wo]
        self.gy = edit.op("Gather", [grid, edit.i64(1, "index")], {"axis": 3})

    def _dim(self, static: int | None, axis: int) -> ir.Value:
        if static is not None:
            return self.e.i64(static, "dim")
        if self.shape_of_x is None:
            self.shape_of_x = self.e.op("Shape", [self.x])
        return self.e.op("Gather", [self.shape_of_x, self.e.i64(axis, "index")], {"axis": 0})

    def _float(self, static: int | None, value: ir.Value) -> ir.Value:
        return (
            self.e.f32(static, "size")
            if static is not None
            else self.e.op("Cast", [value], {"to": ir.DataType.FLOAT})
        )

    def f(self, v: float) -> ir.Value:
        if v not in self.floats:
            self.floats[v] = self.e.f32(v, "c")
        return self.floats[v]

    def op(self, op_type, *inputs, **attrs):
        return self.e.op(op_type, list(inputs), attrs or None)

    def denormalize(self, g: ir.Value, size: ir.Value) -> ir.Value:
        one = self.f(1.0)
        if self.align:  # [-1, 1] -> [0, size - 1]
            return self.op(
                "Mul", self.op("Div", self.op("Add", g, one), self.f(2.0)), self.op("Sub", size, one)
            )
        return self.op("Div", self.op("Sub", self.op("Mul", self.op("Add", g, one), size), one), self.f(2.0))

    def bounds(self, size: ir.Value) -> tuple[ir.Value, ir.Value]:
        if self.align:
            return self.f(0.0), self.op("Sub", size, self.f(1.0))
        return self.f(-0.5), self.op("Sub", size, self.f(0.5))

    def reflect(self, v: ir.Value, size: ir.Value) -> ir.Value:
        """Reflect at the borders until inside, as ONNX Runtime does: n whole ranges, then the rest."""
        lo, hi = self.bounds(size)
        span = self.op("Sub", hi, lo)
        below, above = self.op("Less", v, lo), self.op("Greater", v, hi)
        zero = self.f(0.0)
        dist = self.op(
            "Where", below, self.op("Sub", lo, v), self.op("Where", above, self.op("Sub", v, hi), zero)
        )
        flips = self.op("Floor", self.op("Div", dist, span))
        rest = self.op("Sub", dist, self.op("Mul", flips, span))
        half_flips = self.op("Floor", self.op("Div", flips, self.f(2.0)))
        odd = self.op("Greater", self.op("Sub", flips, self.op("Mul", self.f(2.0), half_flips)), self.f(0.5))
        from_lo = self.op("Xor", below, odd)  # even flips below, odd flips above: measured from lo
        inside = self.op("Where", from_lo, self.op("Add", lo, rest), self.op("Sub", hi, rest))
        return self.op("Where", self.op("Or", below, above), inside, v)

    def coordinate(self, g: ir.Value, size: ir.Value, nearest: bool) -> ir.Value:
        v = self.denormalize(g, size)
        if nearest:
            v = self.op("Round", v)  # round half to even, like std::nearbyint
        if self.padding == "border":
            v = self.op("Clip", v, self.f(0.0), self.op("Sub", size, self.f(1.0)))
        elif self.padding == "reflection":
            v = self.reflect(v, size)
        return v

    def pixels(self, row: ir.Value, col: ir.Value) -> ir.Value:
        """Image values at integral float coordinates [N,Ho,Wo] -> [C,N,Ho,Wo]; zeros outside if padding
        is zeros."""
        clamp_r = self.op("Clip", row, self.f(0.0), self.op("Sub", self.hf, self.f(1.0)))
        clamp_c = self.op("Clip", col, self.f(0.0), self.op("Sub", self.wf, self.f(1.0)))
        r = self.op("Cast", clamp_r, to=ir.DataType.INT64)
        c = self.op("Cast", clamp_c, to=ir.DataType.INT64)
        index = self.op("Add", self.op("Add", self.base, self.op("Mul", r, self.w)), c)
        values = self.op("Gather", self.table, index, axis=1)
        if self.padding != "zeros":
            return values
        inside = self.op(
            "And",
            self.op("And", self.op("Greater", row, self.f(-1.0)), self.op("Less", row, self.hf)),
            self.op("And", self.op("Greater", col, self.f(-1.0)), self.op("Less", col, self.wf)),
        )
        return self.op("Mul", values, self.op("Cast", inside, to=ir.DataType.FLOAT))

    def sample(self, nearest: bool) -> ir.Value:
        x = self.coordinate(self.gx, self.wf, nearest)
        y = self.coordinate(self.gy, self.hf, nearest)
        if nearest:
            out = self.pixels(y, x)
        else:
            one = self.f(1.0)
            x1, y1 = self.op("Floor", x), self.op("Floor", y)
            x2, y2 = self.op("Add", x1, one), self.op("Add", y1, one)
            dx2, dx1 = self.op("Sub", x2, x), self.op("Sub", x, x1)
            dy2, dy1 = self.op("Sub", y2, y), self.op("Sub", y, y1)
            top = self.op(
                "Add", self.op("Mul", dx2, self.pixels(y1, x1)), self.op("Mul", dx1, self.pixels(y1, x2))
            )
            bottom = self.op(
                "Add", self.op("Mul", dx2, self.pixels(y2, x1)), self.op("Mul", dx1, self.pixels(y2, x2))
            )
            out = self.op("Add", self.op("Mul", dy2, top), self.op("Mul", dy1, bottom))
        return self.op("Transpose", out, perm=[1, 0, 2, 3])


def _why_not_decomposable(node: ir.Node) -> str | None:
    """Why this pass cannot replace a GridSample, in words; None when it can."""
    mode, padding, _ = gridsample_settings(node)
    x, grid = node.inputs[0], node.inputs[1]
    problem = None
    if mode not in LINEAR + NEAREST:
        problem = f"uses mode '{mode}'; only bilinear and nearest are decomposed"
    elif padding not in PADDINGS:
        problem = f"has unknown padding_mode '{padding}'"
    elif x.shape is not None and len(x.shape) != 4:
        problem = f"samples a {len(x.shape)}-D input; only 4-D (N,C,H,W) is decomposed"
    elif any(v.dtype not in (None, ir.DataType.FLOAT) for v in (x, grid)):
        problem = "has non-float32 inputs; only float32 is decomposed"
    return problem


class _RuleEditor(Editor):
    """The Editor calls `_Sampler` makes, written with a rule's op builder: the nodes and constants go into
    the replacement (same names, same order) rather than straight into the graph."""

    def __init__(self, model: ir.Model, tag: str, builder):
        super().__init__(model, tag)
        self.builder = builder

    def op(self, op_type: str, inputs, attrs: dict | None = None, num_outputs: int = 1):
        names = [self.unique(f"{self.tag}/{op_type}") for _ in range(num_outputs)]
        out = self.builder.op(op_type, *inputs, _outputs=names, **(attrs or {}))
        return out if num_outputs == 1 else tuple(out)

    def const(self, array, hint: str = "const") -> ir.Value:
        name = self.unique(f"{self.tag}/{hint}")
        return self.builder.initializer(ir.Tensor(np.asarray(array), name=name), name)


class GridSampleToOpset11(Rule):
    def pattern(self, op, x, grid):
        return op.GridSample(x, grid, _allow_other_attributes=True)

    def check(self, context, x, grid, **_) -> MatchResult:
        result = MatchResult()
        node = context.root
        if node.domain or node.graph is not context.model.graph:
            return self.done(result)  # the main graph's ONNX GridSample only, as ever
        problem = _why_not_decomposable(node)
        if problem:
            return result.fail(problem)
        self._plan = (context.model, node)
        return result

    def rewrite(self, op, x, grid, **_):
        model, node = self._plan
        mode, padding, align = gridsample_settings(node)
        edit = _RuleEditor(model, DecomposeGridSample.name, op)  # names unique in the graph, as Editor's
        return _Sampler(edit, x, grid, padding, align).sample(mode in NEAREST)


@register
class DecomposeGridSample(RulePass):
    """Replace GridSample by opset-11 operators (Gather, Floor, Where...) for targets without a native
    GridSample.

    For CANN versions before GridSample and TensorRT before 8.6. Covers bilinear and nearest sampling,
    zeros/border/reflection padding and both align_corners values, with static or dynamic N, H and W;
    matches ONNX Runtime's GridSample to float rounding. Also turns a GridSample grafted into an opset-11
    graph (the Ascend StarNet script) into valid opset-11 ONNX."""

    name = "decompose-gridsample"
    rules = (GridSampleToOpset11,)

    def rewrite(self, model: ir.Model) -> int:
        refused = [
            (node, problem)
            for node in model.graph
            if node.op_type == "GridSample" and not node.domain and (problem := _why_not_decomposable(node))
        ]  # what the rule's check refuses
        if refused and not self.explain:  # a target without GridSample cannot take the model
            node, problem = refused[0]
            raise OcrgraftError(
                f"decompose-gridsample: GridSample {node.name or ''} {problem}".replace("  ", " ")
            )
        asked, self.explain = self.explain, False  # the refusals are named below, in the target's words
        try:
            count = super().rewrite(model)
        finally:
            self.explain = asked
        if asked:  # the target's support check names what is left
            self.misses = [f"GridSample at node '{node.name or '?'}' {problem}" for node, problem in refused]
        return count
