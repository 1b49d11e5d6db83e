"""drop-zero-rnn-state, fold-flip-rnn and resize-nearest-to-bilinear as rewrite rules: they still rewrite
(and the exact ones verify), and `--explain` says in words why a node was left."""

from __future__ import annotations

import numpy as np
from onnx import helper

from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.passes import CHANGES

from test_passes_common import graph_model, ops, rand

FLIP = [
    ("s", np.array([-1])),
    ("e", np.array([-(2**63) + 1])),
    ("a0", np.array([0])),
    ("st", np.array([-1])),
    ("sq", np.array([1])),
]


def _explain(model, passes, shapes):
    result = Pipeline(passes, explain=True).run(model, shapes)
    return result.stages[1], [line for s in result.stages for line in s.explain]


def _weights(op, seed=1):
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
    return [("W", rand(1, 3 * gates, 2, seed=seed)), ("R", rand(1, 3 * gates, 3, seed=seed + 1))]


# -- drop-zero-rnn-state ---------------------------------------------------------------------------------


def test_a_learned_initial_state_is_kept_and_named():
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "", "", "h0"], ["y", "yh"], hidden_size=3, name="learned"),
        helper.make_node("LSTM", ["x", "W", "R"], ["y2"], hidden_size=3, name="plain"),  # nothing to drop
    ]
    inits = _weights("LSTM") + [("h0", rand(1, 2, 3, seed=3))]
    model = graph_model(
        nodes, [("x", [4, 2, 2])], [("y", [4, 1, 2, 3]), ("yh", [1, 2, 3]), ("y2", None)], inits
    )
    stage, lines = _explain(model, ["drop-zero-rnn-state"], None)
    assert stage.rewrites == 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("LSTM at node 'learned': its initial state 'h0' is not all zeros"), lines
    assert "condition failed" in lines[0]


def test_zero_states_built_at_run_time_are_dropped_for_each_output_count():
    nodes = [
        helper.make_node("Shape", ["x"], ["sh"]),
        helper.make_node("Gather", ["sh", "one"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b"], ["b1"], axes=[0]),
        helper.make_node("Concat", ["c1", "b1", "c3"], ["hs"], axis=0),
        helper.make_node("ConstantOfShape", ["hs"], ["h0"]),
        helper.make_node(
            "LSTM", ["x", "W", "R", "", "", "h0", "h0"], ["y", "", "yc"], hidden_size=3, name="l"
        ),
        helper.make_node("GRU", ["x", "Wg", "Rg", "", "", "z"], ["g"], hidden_size=3, name="g"),
    ]
    inits = _weights("LSTM") + [
        ("Wg", rand(1, 9, 2, seed=5)),
        ("Rg", rand(1, 9, 3, seed=6)),
        ("z", np.zeros((1, 2, 3), np.float32)),
        ("one", np.array(1)),
        ("c1", np.array([1])),
        ("c3", np.array([3])),
    ]
    outputs = [("y", ["t", 1, "b", 3]), ("yc", [1, "b", 3]), ("g", ["t", 1, "b", 3])]
    model = graph_model(nodes, [("x", ["t", "b", 2])], outputs, inits)
    stage, lines = _explain(model, ["drop-zero-rnn-state"], "x:1x2x2,5x2x2,9x2x2")  # z bakes in b=2
    assert stage.rewrites == 3 and stage.verified == "yes"  # one per state: h0, c0 and the GRU's h0
    assert lines == []
    assert set(ops(model)) == {"LSTM", "GRU"}
    assert [n.name for n in model.graph] == ["l", "g"]
    assert all(len(n.inputs) == 3 for n in model.graph)
    assert [v.name for v in model.graph.node(0).outputs] == ["y", "", "yc"]


# -- fold-flip-rnn ---------------------------------------------------------------------------------------


def _flip_rnn(op, seq=False, extra=None, state_reader_first=False, flips=1):
    """flip -> op -> Squeeze -> flip(s) over the time axis; its final state read by a Neg, before the flip or
    after it; optionally sequence lengths, or another reader of the squeezed output."""
    rnn_inputs = ["xf", "W", "R"] + (["", "seq"] if seq else [])
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a0", "st"], ["xf"], name="flip_in"),
        helper.make_node(op, rnn_inputs, ["y", "yh"], hidden_size=3, name="bw"),
        helper.make_node("Squeeze", ["y", "sq"], ["ys"], name="squeeze"),
    ]
    names = ["out"] + [f"out{i}" for i in range(2, flips + 1)]
    nodes += [helper.make_node("Slice", ["ys", "s", "e", "a0", "st"], [n], name=f"flip_{n}") for n in names]
    reader = helper.make_node("Neg", ["yh"], ["h"], name="state")
    nodes.insert(2 if state_reader_first else len(nodes), reader)
    outputs = [(n, ["t", "b", 3]) for n in names] + [("h", [1, "b", 3])]
    if extra:
        nodes.append(helper.make_node("Relu", [extra], ["other"], name="other"))
        outputs.append(("other", None))
    inits = _weights(op) + FLIP + ([("seq", np.array([4, 4], np.int32))] if seq else [])
    return graph_model(nodes, [("x", ["t", "b", 2])], outputs, inits, opset=13)


SHAPES = "x:1x1x2,5x2x2,9x3x2"


def test_an_rnn_with_sequence_lengths_is_left_and_explained():
    stage, lines = _explain(_flip_rnn("LSTM", seq=True), ["fold-flip-rnn"], "x:4x2x2")
    assert stage.rewrites == 0
    found = [line for line in lines if line.startswith("Slice at node 'flip_out': ")]
    assert len(found) == 1, lines
    assert "LSTM 'bw' has sequence lengths 'seq': reversing padded ones is not the same" in found[0]
    assert "condition failed" in found[0]


def test_a_flipped_output_read_elsewhere_is_left_and_its_reader_named():
    stage, lines = _explain(_flip_rnn("GRU", extra="ys"), ["fold-flip-rnn"], SHAPES)
    assert stage.rewrites == 0
    expected = (
        "the output 'ys' of Squeeze 'squeeze' is also read by Relu 'other', so it cannot be folded away"
    )
    assert any(line.startswith("Slice at node 'flip_out': " + expected) for line in lines), lines


def test_flips_fold_into_a_reverse_rnn_whose_final_state_is_read_before_the_flip():
    model = _flip_rnn("GRU", state_reader_first=True)
    stage, _ = _explain(model, ["fold-flip-rnn"], SHAPES)
    assert stage.rewrites == 1 and stage.verified == "yes"  # verified in ONNX Runtime: the order is valid
    assert set(ops(model)) == {"GRU", "Squeeze", "Neg"}
    gru = next(n for n in model.graph if n.op_type == "GRU")
    assert gru.name == "bw" and gru.attributes.get_string("direction") == "reverse"
    assert gru.inputs[0] is model.graph.inputs[0]
    assert [v.name for v in model.graph.outputs] == ["out", "h"]


def test_an_output_reversed_by_two_flips_is_still_folded():
    """The form no rule can match (a pattern holds one flip): the pass's loop folds it."""
    model = _flip_rnn("RNN", flips=2)
    stage, _ = _explain(model, ["fold-flip-rnn"], SHAPES)
    assert stage.rewrites == 1 and stage.verified == "yes"
    assert ops(model)["Slice"] == 0 and ops(model)["RNN"] == 1


# -- resize-nearest-to-bilinear ----------------------------------------------------------------------------


def _resize(scales, mode="nearest", name="up", **attrs):
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], name=name, mode=mode, **attrs)]
    inits = [("scales", np.array(scales, np.float32))]
    return graph_model(nodes, [("x", ["n", 2, 4, 4])], [("y", None)], inits, opset=13)


def test_a_resize_of_the_channels_is_left_and_explained():
    stage, lines = _explain(_resize([1, 2, 2, 2]), ["resize-nearest-to-bilinear"], "x:1x2x4x4")
    assert stage.rewrites == 0
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "Resize at node 'up': its scales [1.0, 2.0, 2.0, 2.0] also resize the batch or channel axis"
    )
    assert "condition failed" in lines[0]
    _, lines = _explain(_resize([1, 1, 2, 2], mode="linear"), ["resize-nearest-to-bilinear"], "x:1x2x4x4")
    assert lines == []  # already bilinear: nothing to explain


def test_a_nearest_upsampling_still_becomes_bilinear():
    model = _resize([1, 1, 2, 2], nearest_mode="floor", coordinate_transformation_mode="asymmetric")
    stage, lines = _explain(model, ["resize-nearest-to-bilinear"], "x:1x2x4x4,2x2x4x4")
    assert stage.rewrites == 1 and stage.semantics == CHANGES and lines == []
    assert stage.verified.startswith("not checked")  # changes the numbers: never claimed equal
    (node,) = list(model.graph)
    assert node.name == "up"
    assert node.attributes.get_string("mode") == "linear"
    assert node.attributes.get_string("coordinate_transformation_mode") == "pytorch_half_pixel"
    assert "nearest_mode" not in node.attributes
