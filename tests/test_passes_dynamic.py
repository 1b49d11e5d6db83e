"""The fix.py family: reshape-gemm-to-matmul, drop-zero-rnn-state, fold-flip-rnn, squeeze-after-concat, on
real torch exports with dynamic batch and width and on crafted graphs, plus graphs that look similar but must
stay as they are."""

from __future__ import annotations

import warnings

import numpy as np
import onnx_ir as ir
import pytest
import torch
from onnx import helper

from ocrgraft.core.runner import Runner

from test_passes_common import (
    apply,
    assert_idempotent,
    assert_untouched,
    export_torch,
    graph_model,
    ops,
    rand,
    verify,
)

FIX_PY = ["reshape-gemm-to-matmul", "drop-zero-rnn-state", "fold-flip-rnn", "squeeze-after-concat"]
SHAPES = "x:1x1x32x32,2x1x32x100,3x1x32x160"


class _Crnn(torch.nn.Module):
    """The Ascend CRNN_Dynamic head: two unidirectional LSTMs, the backward one between torch.flips,
    then view(T*b, h) -> Linear -> view(T, b, -1)."""

    def __init__(self, flip=True, tail="restore"):
        super().__init__()
        self.flip, self.tail = flip, tail
        self.cnn = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d((4, 2)),
            torch.nn.Conv2d(8, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d((8, 2)),
        )
        self.fw, self.bw = torch.nn.LSTM(16, 12), torch.nn.LSTM(16, 12)
        self.emb = torch.nn.Linear(24, 7)

    def forward(self, x):
        seq = self.cnn(x).squeeze(2).permute(2, 0, 1)  # [T, b, 16]
        fw, _ = self.fw(seq)
        if self.flip:
            bw, _ = self.bw(torch.flip(seq, [0]))
            bw = torch.flip(bw, [0])
        else:
            bw, _ = self.bw(seq)
        rec = torch.cat((fw, bw), 2)
        t, b, h = rec.size()
        out = self.emb(rec.view(t * b, h))
        return out.view(t, b, -1) if self.tail == "restore" else out.view(t, -1)


def _export(module):
    return export_torch(
        module,
        (torch.randn(2, 1, 32, 100),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 3: "w"}},
    )


def test_fix_py_family_on_the_ascend_crnn_head():
    module = _Crnn()
    model = _export(module)
    before = ops(model)
    assert before["Gemm"] == 1 and before["ConstantOfShape"] == 2 and before["Slice"] >= 2
    result = verify(model, FIX_PY, SHAPES)
    assert [s.rewrites for s in result.stages[1:]] == [1, 4, 1, 1]
    after = ops(model)
    assert after["Gemm"] == 0 and after["ConstantOfShape"] == 0 and after["Slice"] == 0
    assert (
        after["Shape"] == 0 and after["Gather"] == 0 and after["Concat"] == 1
    )  # only the fw/bw Concat is left
    assert after["Squeeze"] == before["Squeeze"] - 1  # one Squeeze after it, not one per LSTM
    lstms = [n for n in model.graph if n.op_type == "LSTM"]
    assert sorted(n.attributes.get_string("direction", "forward") for n in lstms) == ["forward", "reverse"]
    assert all(len(n.inputs) == 4 for n in lstms)
    assert [str(d) for d in model.graph.inputs[0].shape] == ["b", "1", "32", "w"]
    x = torch.randn(4, 1, 32, 248)
    with torch.no_grad():
        np.testing.assert_allclose(Runner(model).run({"x": x.numpy()})["y"], module(x).numpy(), atol=1e-5)
    for name in FIX_PY:
        assert_idempotent(name, model)


def test_bidirectional_lstm_export_also_loses_its_shape_chains():
    class Sierkinhane(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.emb = torch.nn.LSTM(16, 8, bidirectional=True), torch.nn.Linear(16, 5)

        def forward(self, x):  # x: [b, 16, w] -> [w, b, 16]
            rec, _ = self.rnn(x.permute(2, 0, 1))
            t, b, h = rec.size()
            return self.emb(rec.view(t * b, h)).view(t, b, -1)

    model = export_torch(
        Sierkinhane(),
        (torch.randn(2, 16, 10),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 2: "w"}},
    )
    verify(model, FIX_PY, "x:1x16x5,2x16x10,3x16x31")
    assert ops(model)["Shape"] == 0 and ops(model)["ConstantOfShape"] == 0 and ops(model)["Gemm"] == 0


def test_reshape_gemm_from_the_dynamo_exporter():
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Linear(24, 7)

        def forward(self, r):
            t, b, h = r.size()
            return self.emb(r.view(t * b, h)).view(t, b, -1)

    dims = {"r": {0: torch.export.Dim("T"), 1: torch.export.Dim("B")}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            Head(), (torch.randn(5, 2, 24),), dynamo=True, verbose=False, dynamic_shapes=dims
        )
    model = ir.serde.deserialize_model(program.model_proto)
    assert (
        ops(model)["Gemm"] == 1 and ops(model)["Shape"] == 2
    )  # Shape(start, end) slices, torch.export style
    verify(model, ["reshape-gemm-to-matmul"], "r:1x1x24,5x2x24,9x3x24")
    assert set(ops(model)) == {"MatMul", "Add"}


def test_lookalikes_stay_untouched():
    model = _export(_Crnn(flip=False, tail="merge"))  # view(t, -1) merges b into the features
    for name in ("reshape-gemm-to-matmul", "fold-flip-rnn"):
        assert_untouched(name, model)
    # a non-zero learned initial state, and a flip over the batch axis
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a1", "st"], ["xf"]),
        helper.make_node("LSTM", ["xf", "W", "R", "", "", "h0"], ["y", "yh"], hidden_size=3),
        helper.make_node("Slice", ["y", "s", "e", "a1", "st"], ["yf"]),
    ]
    inits = [
        ("W", rand(1, 12, 2, seed=1)),
        ("R", rand(1, 12, 3, seed=2)),
        ("h0", rand(1, 2, 3, seed=3)),
        ("s", np.array([-1])),
        ("e", np.array([-(2**63) + 1])),
        ("a1", np.array([1])),
        ("st", np.array([-1])),
    ]
    model = graph_model(nodes, [("x", [4, 2, 2])], [("yf", [4, 1, 2, 3]), ("yh", [1, 2, 3])], inits)
    assert_untouched("drop-zero-rnn-state", model)
    assert_untouched("fold-flip-rnn", model)


@pytest.mark.parametrize("op", ["GRU", "RNN"])
def test_flip_fold_and_zero_state_for_gru_and_rnn(op):
    gates = {"GRU": 3, "RNN": 1}[op]
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a0", "st"], ["xf"]),
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "one"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b"], ["b1"], axes=[0]),
        helper.make_node("Concat", ["c1", "b1", "c3"], ["hs"], axis=0),
        helper.make_node("ConstantOfShape", ["hs"], ["h0"]),
        helper.make_node(op, ["xf", "W", "R", "B", "", "h0"], ["y", "yh"], hidden_size=3),
        helper.make_node("Squeeze", ["y"], ["ys"], axes=[1]),
        helper.make_node("Slice", ["ys", "s", "e", "a0", "st"], ["out"]),
    ]
    inits = [
        ("W", rand(1, 3 * gates, 2, seed=1)),
        ("R", rand(1, 3 * gates, 3, seed=2)),
        ("B", rand(1, 6 * gates, seed=4)),
        ("s", np.array([-1])),
        ("e", np.array([-(2**63) + 1])),
        ("a0", np.array([0])),
        ("st", np.array([-1])),
        ("one", np.array(1)),
        ("c1", np.array([1])),
        ("c3", np.array([3])),
    ]
    model = graph_model(nodes, [("x", ["t", "b", 2])], [("out", ["t", "b", 3]), ("yh", [1, "b", 3])], inits)
    verify(model, ["drop-zero-rnn-state", "fold-flip-rnn"], "x:1x1x2,5x2x2,9x3x2")
    assert set(ops(model)) == {op, "Squeeze"}
    assert next(n for n in model.graph if n.op_type == op).attributes.get_string("direction") == "reverse"
    assert_idempotent("fold-flip-rnn", model)
    assert_idempotent("drop-zero-rnn-state", model)


def test_zero_state_with_the_example_batch_baked_in_becomes_batch_free():
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "", "", "h0", "h0"], ["y"], hidden_size=3)]
    inits = [
        ("W", rand(1, 12, 2, seed=1)),
        ("R", rand(1, 12, 3, seed=2)),
        ("h0", np.zeros((1, 2, 3), np.float32)),
    ]
    model = graph_model(nodes, [("x", [5, "b", 2])], [("y", [5, 1, "b", 3])], inits)
    x = rand(5, 2, 2)
    expected = Runner(model).run({"x": x})["y"]
    assert apply("drop-zero-rnn-state", model) == 2
    assert len(model.graph.initializers) == 2  # h0 is gone
    np.testing.assert_allclose(Runner(model).run({"x": x})["y"], expected, atol=1e-6)
    Runner(model).run({"x": rand(5, 7, 2)})  # other batch sizes now run
    assert isinstance(model, ir.Model)


class _Views(torch.nn.Module):
    """flatten and view with sizes read at run time, as exporters emit them."""

    def forward(self, x):  # x: [b, 4, 4, w]
        y = x.flatten(1, 2)  # [b, 16, w]: Shape/Slice/Concat target
        z = y.reshape(y.size(0), y.size(2), -1)  # [b, w, 16]: a dynamic dim moves
        t, b, h = z.permute(1, 0, 2).size()
        return torch.relu(z.permute(1, 0, 2).reshape(t * b, h))  # [w*b, 16]: a product of dynamic dims


def test_fold_reshape_shapes_makes_targets_constant_and_dims_stay_dynamic():
    model = export_torch(
        _Views(),
        (torch.randn(2, 4, 4, 10),),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 3: "w"}},
    )
    assert ops(model)["Shape"] >= 3
    result = verify(model, ["fold-reshape-shapes"], "x:1x4x4x3,2x4x4x10,5x4x4x33")
    assert result.stages[1].rewrites == 3
    reshapes = [n for n in model.graph if n.op_type == "Reshape"]
    assert [n.inputs[1].const_value.numpy().tolist() for n in reshapes] == [
        [0, 16, -1],
        [0, -1, 16],
        [-1, 16],
    ]
    assert ops(model)["Shape"] == 0 and ops(model)["Gather"] == 0 and ops(model)["Concat"] == 0
    assert_idempotent("fold-reshape-shapes", model)


def test_fold_reshape_shapes_leaves_targets_it_cannot_prove():
    nodes = [helper.make_node("Shape", ["y"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["z"])]
    model = graph_model(nodes, [("x", ["a", "b"]), ("y", ["c", "d"])], [("z", ["c", "d"])])
    assert_untouched("fold-reshape-shapes", model)


# -- squeeze-after-concat ----------------------------------------------------------------------------------


def _squeezed_concat(opset, axes, axis, a, b, out, extra_use=False):
    """Concat(Squeeze(a), Squeeze(b)); axes as an attribute below opset 13, as a constant input from 13."""
    attr = opset < 13
    squeezes = [
        helper.make_node("Squeeze", [x] if attr else [x, "ax"], [f"{x}s"], **({"axes": axes} if attr else {}))
        for x in ("a", "b")
    ]
    nodes = squeezes + [helper.make_node("Concat", ["as", "bs"], ["y"], axis=axis)]
    outputs = [("y", out)]
    if extra_use:  # the first Squeeze is read elsewhere too: it stays
        nodes.append(helper.make_node("Relu", ["as"], ["r"]))
        outputs.append(("r", None))
    inits = [] if attr else [("ax", np.array(axes, np.int64))]
    return graph_model(nodes, [("a", a), ("b", b)], outputs, inits, opset=opset)


# opset, squeeze axes, concat axis, a, b, y, shapes, then the new concat axis and squeezed axis
SQUEEZE_CASES = {
    "lstm-fw-bw-attr": (
        11,
        [1],
        2,
        ["t", 1, "b", 3],
        ["t", 1, "b", 5],
        ["t", "b", 8],
        "a:1x1x1x3,5x1x2x3,9x1x3x3;b:1x1x1x5,5x1x2x5,9x1x3x5",
        3,
        1,
    ),
    "lstm-fw-bw-input": (
        13,
        [1],
        2,
        ["t", 1, "b", 3],
        ["t", 1, "b", 5],
        ["t", "b", 8],
        "a:1x1x1x3,5x1x2x3,9x1x3x3;b:1x1x1x5,5x1x2x5,9x1x3x5",
        3,
        1,
    ),
    "negative-axes": (
        13,
        [-3],
        -1,
        ["t", 1, "b", 3],
        ["t", 1, "b", 5],
        ["t", "b", 8],
        "a:1x1x1x3,5x1x2x3,9x1x3x3;b:1x1x1x5,5x1x2x5,9x1x3x5",
        3,
        1,
    ),
    "concat-before-squeezed-axis": (
        11,
        [-1],
        0,
        ["t", "b", 3, 1],
        ["u", "b", 3, 1],
        ["v", "b", 3],
        "a:1x1x3x1,4x2x3x1,7x3x3x1;b:2x1x3x1,3x2x3x1,8x3x3x1",
        0,
        3,
    ),
    "squeezed-axis-first": (
        17,
        [0],
        -1,
        [1, "t", 4],
        [1, "t", 2],
        ["t", 6],
        "a:1x1x4,1x6x4,1x20x4;b:1x1x2,1x6x2,1x20x2",
        2,
        0,
    ),
}


@pytest.mark.parametrize("case", list(SQUEEZE_CASES))
def test_squeeze_after_concat(case):
    from ocrgraft.passes._edit import axes_of

    opset, axes, axis, a, b, out, shapes, new_axis, squeezed = SQUEEZE_CASES[case]
    model = _squeezed_concat(opset, axes, axis, a, b, out)
    verify(model, ["squeeze-after-concat"], shapes)
    assert ops(model) == {"Concat": 1, "Squeeze": 1}
    concat, squeeze = list(model.graph)
    assert concat.inputs[0].name == "a" and concat.inputs[1].name == "b"
    assert concat.attributes.get_int("axis") == new_axis and axes_of(squeeze) == [squeezed]
    assert ("axes" in squeeze.attributes) == (opset < 13)
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert [str(d) for d in model.graph.inputs[0].shape] == [str(d) for d in a]  # dims stay dynamic
    assert [isinstance(d, int) for d in model.graph.outputs[0].shape] == [isinstance(d, int) for d in out]
    assert_idempotent("squeeze-after-concat", model)


def test_squeeze_after_concat_keeps_a_squeeze_read_elsewhere():
    model = _squeezed_concat(13, [1], 2, ["t", 1, "b", 3], ["t", 1, "b", 5], ["t", "b", 8], extra_use=True)
    verify(model, ["squeeze-after-concat"], "a:1x1x1x3,5x1x2x3,9x1x3x3;b:1x1x1x5,5x1x2x5,9x1x3x5")
    assert ops(model) == {"Concat": 1, "Squeeze": 2, "Relu": 1}
    assert [v.name for v in model.graph.outputs] == ["y", "r"]
    assert_idempotent("squeeze-after-concat", model)


def test_squeeze_after_concat_leaves_other_concats():
    mixed = graph_model(
        [
            helper.make_node("Squeeze", ["a"], ["as"], axes=[1]),
            helper.make_node("Concat", ["as", "c"], ["y"], axis=2),
        ],
        [("a", ["t", 1, "b", 3]), ("c", ["t", "b", 5])],
        [("y", ["t", "b", 8])],
    )
    assert_untouched("squeeze-after-concat", mixed)  # one input is no Squeeze
    apart = graph_model(
        [
            helper.make_node("Squeeze", ["a"], ["as"], axes=[1]),
            helper.make_node("Squeeze", ["b"], ["bs"], axes=[0]),
            helper.make_node("Concat", ["as", "bs"], ["y"], axis=1),
        ],
        [("a", ["t", 1, "b", 3]), ("b", [1, "t", "b", 3])],
        [("y", ["t", None, 3])],
    )
    assert_untouched("squeeze-after-concat", apart)  # different axes
    two = graph_model(
        [helper.make_node("Squeeze", [x], [f"{x}s"], axes=[0, 2]) for x in "ab"]
        + [helper.make_node("Concat", ["as", "bs"], ["y"], axis=0)],
        [("a", [1, 4, 1, 3]), ("b", [1, 2, 1, 3])],
        [("y", [6, 3])],
    )
    assert_untouched("squeeze-after-concat", two)  # two axes squeezed
    implicit = graph_model(
        [helper.make_node("Squeeze", [x], [f"{x}s"]) for x in "ab"]
        + [helper.make_node("Concat", ["as", "bs"], ["y"], axis=0)],
        [("a", [4, 1]), ("b", [2, 1])],
        [("y", [6])],
        opset=13,
    )
    assert_untouched("squeeze-after-concat", implicit)  # no axes given
