"""resize-nearest-to-bilinear: opt-in, changes outputs (to exactly what a bilinear model computes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from ocrgraft import OcrgraftError
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.core.runner import Runner
from ocrgraft.passes import CHANGES, get_pass

from test_passes_common import assert_idempotent, assert_untouched, export_torch, graph_model, rand


class _Fpn(torch.nn.Module):
    """DBNet's neck pattern: upsample a coarse map and add it to a finer one."""

    def __init__(self, mode="nearest"):
        super().__init__()
        self.mode = mode
        self.coarse = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fine = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        up = torch.nn.functional.interpolate(
            self.coarse(x),
            scale_factor=2.0,
            mode=self.mode,
            **({} if self.mode == "nearest" else {"align_corners": False}),
        )
        return self.fine(x) + up


def test_nearest_becomes_what_a_bilinear_model_computes():
    nearest = _Fpn("nearest")
    bilinear = _Fpn("bilinear")
    bilinear.load_state_dict(nearest.state_dict())
    model = export_torch(
        nearest,
        (torch.randn(1, 3, 32, 32),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
    )
    before = Runner(model)
    result = Pipeline(["resize-nearest-to-bilinear"]).run(model, shapes="x:1x3x32x32,2x3x64x96")
    assert result.stages[1].rewrites == 1 and result.stages[1].semantics == CHANGES
    assert result.stages[1].verified.startswith("not checked")  # never claimed equal
    after = Runner(model)
    for shape in [(1, 3, 32, 32), (2, 3, 64, 96)]:
        x = rand(*shape, seed=shape[2])
        with torch.no_grad():
            expected = bilinear(torch.from_numpy(x)).numpy()
        got = after.run({"x": x})["y"]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert np.abs(got - before.run({"x": x})["y"]).max() > 1e-3  # the numbers did change
    assert_idempotent("resize-nearest-to-bilinear", model)


def test_other_resizes_are_left_alone():
    scales = np.array([1.0, 1.0, 2.0, 2.0], np.float32)
    channel = np.array([1.0, 2.0, 2.0, 2.0], np.float32)
    nodes = [
        helper.make_node("Resize", ["x", "", "s"], ["a"], mode="linear"),
        helper.make_node("Resize", ["a", "", "c"], ["y"], mode="nearest"),
    ]  # also scales channels
    model = graph_model(
        nodes, [("x", [1, 2, 4, 4])], [("y", [1, 4, 16, 16])], [("s", scales), ("c", channel)], opset=13
    )
    assert_untouched("resize-nearest-to-bilinear", model)


def test_it_is_opt_in_only():
    assert get_pass("resize-nearest-to-bilinear").semantics == CHANGES
    with pytest.raises(OcrgraftError, match="has no argument mode; it takes no arguments"):
        get_pass("resize-nearest-to-bilinear(mode=cubic)")
