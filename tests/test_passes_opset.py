"""convert-opset: verified conversions both ways, ops the converter has no adapter for, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.runner import Runner
from ocrgraft.passes import get_pass

from test_passes_common import apply, assert_untouched, export_torch, graph_model, ops, rand, verify


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean(2)  # ReduceMean: axes attribute vs input at 18
        f = f.permute(0, 2, 1).unsqueeze(1).squeeze(1)  # Squeeze/Unsqueeze: axes input from 13
        return torch.nn.functional.pad(self.fc(f), (0, 1)).clamp(-1, 1)  # Pad and Clip changed across opsets


@pytest.mark.parametrize("source,target", [(11, 13), (11, 18), (17, 11), (13, 12)])
def test_conversion_is_verified_at_several_shapes(source, target):
    model = export_torch(
        _Net(),
        (torch.randn(1, 3, 8, 16),),
        opset=source,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n", 3: "w"}},
    )
    verify(model, [f"convert-opset(opset={target})"], "x:1x3x8x5,2x3x8x16,3x3x8x40")
    assert model.opset_imports[""] == target
    assert [str(d) for d in model.graph.inputs[0].shape] == ["n", "3", "8", "w"]
    assert_untouched(f"convert-opset(opset={target})", model)


def test_ops_without_a_down_adapter_are_kept_when_valid_as_they_stand():
    # Identity 16 and Shape 15 have no adapter down to 11; Reshape's allowzero=0 is the old behaviour
    nodes = [
        helper.make_node("Identity", ["x"], ["i"]),
        helper.make_node("Shape", ["i"], ["s"]),
        helper.make_node("Reshape", ["i", "flat"], ["r"], allowzero=0),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    model = graph_model(
        nodes,
        [("x", ["n", 3, 4])],
        [("y", ["n", 12]), ("s", [3], 7)],
        [("flat", np.array([0, -1]))],
        opset=16,
    )
    x = rand(2, 3, 4)
    expected = Runner(model).run({"x": x})
    assert apply("convert-opset(opset=11)", model) == 1
    assert model.opset_imports[""] == 11 and model.ir_version <= 6
    got = Runner(model).run({"x": x})
    np.testing.assert_array_equal(got["y"], expected["y"])
    np.testing.assert_array_equal(got["s"], expected["s"])


def test_refusals_name_the_op():
    grid = graph_model(
        [helper.make_node("GridSample", ["x", "g"], ["y"])],
        [("x", [1, 1, 4, 4]), ("g", [1, 2, 2, 2])],
        [("y", [1, 1, 2, 2])],
        opset=16,
    )
    with pytest.raises(OcrgraftError, match="GridSample.*not defined at opset 11.*decompose-gridsample"):
        apply("convert-opset(opset=11)", grid)
    assert ops(grid)["GridSample"] == 1 and grid.opset_imports[""] == 16  # left as it was
    shape15 = graph_model(
        [helper.make_node("Shape", ["x"], ["y"], start=1)], [("x", [1, 2, 3])], [("y", [2], 7)], opset=15
    )
    with pytest.raises(OcrgraftError, match="cannot convert opset 15 -> 11.*Shape"):
        apply("convert-opset(opset=11)", shape15)
    for bad in ("convert-opset(opset=abc)", "convert-opset(opset=3)", "convert-opset"):
        with pytest.raises(OcrgraftError):
            get_pass(bad)
