"""decompose-gridsample against ONNX Runtime's own GridSample (every mode, padding and align_corners, at
opset 11, sample points far outside the image), and legalize-gridsample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.runner import Runner

from test_passes_common import (
    apply,
    assert_idempotent,
    assert_untouched,
    export_torch,
    graph_model,
    ops,
    verify,
)

SHAPES = [(1, 5, 7, 4, 6), (2, 8, 13, 5, 9), (3, 1, 4, 3, 3), (1, 16, 40, 8, 24)]  # N, H, W, Ho, Wo


def _model(opset=16, **attrs):
    node = helper.make_node("GridSample", ["x", "g"], ["y"], **attrs)
    return graph_model(
        [node],
        [("x", ["n", 3, "h", "w"]), ("g", ["n", "ho", "wo", 2])],
        [("y", ["n", 3, "ho", "wo"])],
        opset=opset,
    )


def _grid(rng, n, ho, wo):
    """Points inside and far outside [-1, 1], the corners, and ties for nearest rounding."""
    grid = rng.uniform(-3.5, 3.5, (n, ho, wo, 2)).astype(np.float32)
    grid.reshape(-1)[:10] = [-1, 1, 0, -1.0000001, 1.0000001, 0.5, -0.5, 2.0, -2.0, 1 / 3]
    return grid


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align", [0, 1])
def test_decomposition_matches_onnxruntime_at_opset_11(mode, padding, align):
    attrs = dict(mode=mode, padding_mode=padding, align_corners=align)
    reference = Runner(_model(**attrs))
    model = _model(**attrs)
    assert apply("decompose-gridsample", model) == 1
    assert apply("convert-opset(opset=11)", model) == 1
    assert model.opset_imports[""] == 11 and ops(model)["GridSample"] == 0
    assert [str(d) for d in model.graph.outputs[0].shape] == ["n", "3", "ho", "wo"]
    decomposed = Runner(model)
    rng = np.random.default_rng(7)
    for n, h, w, ho, wo in SHAPES:
        feeds = {"x": rng.standard_normal((n, 3, h, w)).astype(np.float32), "g": _grid(rng, n, ho, wo)}
        np.testing.assert_allclose(decomposed.run(feeds)["y"], reference.run(feeds)["y"], rtol=0, atol=1e-5)
    assert_idempotent("decompose-gridsample", model)


def test_decomposition_reads_opset_20_names_and_static_shapes():
    model = graph_model(
        [helper.make_node("GridSample", ["x", "g"], ["y"], mode="linear", padding_mode="border")],
        [("x", [2, 3, 8, 20]), ("g", [2, 4, 10, 2])],
        [("y", [2, 3, 4, 10])],
        opset=20,
    )
    reference = Runner(
        graph_model(
            [helper.make_node("GridSample", ["x", "g"], ["y"], mode="linear", padding_mode="border")],
            [("x", [2, 3, 8, 20]), ("g", [2, 4, 10, 2])],
            [("y", [2, 3, 4, 10])],
            opset=20,
        )
    )
    apply("decompose-gridsample", model)
    assert ops(model)["Shape"] == 0  # static dims become constants, no shape arithmetic
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 3, 8, 20)).astype(np.float32), "g": _grid(rng, 2, 4, 10)}
    np.testing.assert_allclose(Runner(model).run(feeds)["y"], reference.run(feeds)["y"], atol=1e-5)


def test_decomposition_refuses_what_it_cannot_do():
    with pytest.raises(OcrgraftError, match="bicubic"):
        apply("decompose-gridsample", _model(mode="bicubic"))
    assert_untouched(
        "decompose-gridsample",
        graph_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], [("y", [1, 2])]),
    )


class _Tps(torch.nn.Module):
    """A TPS-like rectifier: a grid from a fixed basis and a small localization head, then grid_sample."""

    def __init__(self, padding="zeros", align=True):
        super().__init__()
        self.padding, self.align = padding, align
        self.loc = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(4, 6),
        )
        torch.nn.init.normal_(self.loc[-1].weight, std=0.3)

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3) + torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
        n, _, h, w = x.shape
        ys = torch.linspace(-1, 1, 8).view(8, 1).expand(8, 25)
        xs = torch.linspace(-1, 1, 25).view(1, 25).expand(8, 25)
        base = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, -1, 3)
        grid = torch.tanh(base.matmul(theta.transpose(1, 2))).view(-1, 8, 25, 2) * 1.2
        return torch.nn.functional.grid_sample(x, grid, padding_mode=self.padding, align_corners=self.align)


@pytest.mark.parametrize("padding,align", [("zeros", True), ("border", True), ("reflection", False)])
def test_tps_rectifier_runs_at_opset_11_with_the_same_outputs(padding, align):
    module = _Tps(padding, align)
    model = export_torch(
        module,
        (torch.randn(2, 3, 32, 100),),
        opset=16,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n", 3: "w"}},
    )
    result = verify(
        model, ["decompose-gridsample", "convert-opset(opset=11)"], "x:1x3x32x64,2x3x32x100,3x3x32x160"
    )
    assert model.opset_imports[""] == 11 and ops(model)["GridSample"] == 0
    x = torch.randn(2, 3, 32, 77)
    with torch.no_grad():
        expected = module(x).numpy()
    # torch and ONNX Runtime already differ by ~2e-5 on the exported grid maths; the 1e-5 claim is against ORT
    np.testing.assert_allclose(Runner(model).run({"x": x.numpy()})["y"], expected, atol=1e-4)
    assert result.stages[-1].max_abs < 1e-5


# -- legalize-gridsample -------------------------------------------------------------------------------


def test_legalize_fixes_paddle2onnx_mode_name_at_opset_20():
    model = _model(opset=20, mode="bilinear", align_corners=1)  # what paddle2onnx 2.1 writes
    with pytest.raises(OcrgraftError):
        Runner(model)  # ONNX Runtime refuses it
    assert apply("legalize-gridsample", model) == 1
    node = next(iter(model.graph))
    assert (
        node.attributes.get_string("mode") == "linear"
        and node.attributes.get_string("padding_mode") == "zeros"
    )
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((2, 3, 6, 9)).astype(np.float32), "g": _grid(rng, 2, 4, 5)}
    expected = Runner(_model(opset=16, mode="bilinear", align_corners=1)).run(feeds)["y"]
    np.testing.assert_allclose(Runner(model).run(feeds)["y"], expected, atol=1e-6)
    assert_idempotent("legalize-gridsample", model)


def test_legalize_lifts_a_grafted_opset_11_graph_and_writes_defaults():
    nodes = [
        helper.make_node("Unsqueeze", ["s"], ["s4"], axes=[0]),
        helper.make_node("Mul", ["x", "s4"], ["xs"]),
        helper.make_node("GridSample", ["xs", "g"], ["y"]),
    ]  # grafted, as the StarNet script does
    inputs = [("x", ["n", 3, "h", "w"]), ("g", ["n", "ho", "wo", 2]), ("s", [3, 1, 1])]
    model = graph_model(nodes, inputs, [("y", ["n", 3, "ho", "wo"])], opset=11)
    assert apply("legalize-gridsample", model) == 2  # the opset, then the attributes
    assert model.opset_imports[""] == 16
    gs = next(n for n in model.graph if n.op_type == "GridSample")
    assert (gs.attributes.get_string("mode"), gs.attributes.get_int("align_corners")) == ("bilinear", 0)
    rng = np.random.default_rng(5)
    feeds = {
        "x": rng.standard_normal((1, 3, 5, 8)).astype(np.float32),
        "g": _grid(rng, 1, 3, 4),
        "s": rng.standard_normal((3, 1, 1)).astype(np.float32),
    }
    expected = feeds["x"] * feeds["s"][None]
    reference = Runner(_model(opset=16)).run({"x": expected.astype(np.float32), "g": feeds["g"]})["y"]
    np.testing.assert_allclose(Runner(model).run(feeds)["y"], reference, atol=1e-6)
    assert_idempotent("legalize-gridsample", model)
    assert_untouched(
        "legalize-gridsample",
        graph_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], [("y", [1, 2])]),
    )
