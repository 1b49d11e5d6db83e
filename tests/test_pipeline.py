"""The pipeline's contract: one graph through passes, stages saved, every exact stage verified."""

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import ocrgraft
from ocrgraft import OcrgraftError, Pipeline, VerificationError
from ocrgraft.core.compare import Tolerance
from ocrgraft.core.modelio import load
from ocrgraft.core.runner import Runner
from ocrgraft.core.shapes import ShapeSet, random_inputs
from ocrgraft.passes import GENERIC_PASSES

from conftest import DYN_SHAPES, make_dynamic_model
from perturb import PerturbWeight


def _input_dims(model: ir.Model):
    return [d if isinstance(d, int) else d.value for d in model.graph.inputs[0].shape]


def test_generic_pipeline_keeps_dims_dynamic_and_outputs_equal(tmp_path):
    source = make_dynamic_model()
    result = Pipeline(GENERIC_PASSES, stages_dir=tmp_path).run(source, DYN_SHAPES)
    model = result.model
    assert _input_dims(model) == ["batch", 3, 8, "width"]
    ops = [n.op_type for n in model.graph]
    assert "Identity" not in ops and "Constant" not in ops and "Neg" not in ops and "Add" not in ops
    assert all(s.verified in ("reference", "yes", "unchanged") for s in result.stages)
    # Independent of the pipeline's own check: run source and result side by side at other shapes.
    src, out = Runner(source.SerializeToString()), Runner(model)
    for i, shape in enumerate([(1, 3, 8, 8), (4, 3, 8, 24), (2, 3, 8, 200)]):
        feeds = random_inputs(list(model.graph.inputs), {"x": shape}, seed=100 + i)
        np.testing.assert_allclose(out.run(feeds)["y"], src.run(feeds)["y"], rtol=1e-5, atol=1e-6)


def test_stages_are_saved_in_order_and_loadable(tmp_path):
    result = Pipeline(["eliminate-identity", "lift-constants"], stages_dir=tmp_path).run(
        make_dynamic_model(), DYN_SHAPES
    )
    names = sorted(p.name for p in tmp_path.glob("*.onnx"))
    assert names == ["00_source.onnx", "01_eliminate-identity.onnx", "02_lift-constants.onnx"]
    assert [s.file for s in result.stages] == [str(tmp_path / n) for n in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "weights.bin"]  # weights kept once
    staged = onnx.load(tmp_path / "01_eliminate-identity.onnx")
    assert "Identity" not in {n.op_type for n in staged.graph.node}
    assert result.stages[1].rewrites == 1 and result.stages[1].op_delta == {"Identity": -1}


def test_stages_verified_at_every_shape_case():
    result = Pipeline(["lift-constants"], samples=2).run(make_dynamic_model(), DYN_SHAPES)
    assert [c.label for c in result.cases] == ["min#1", "min#2", "opt#1", "opt#2", "max#1", "max#2"]
    assert len(result.stages[1].comparisons) == 6
    for case in result.cases:  # random, never zeros
        assert np.abs(case.feeds["x"]).min() >= 0.05


def test_wrong_pass_is_caught_naming_pass_output_and_worst_element():
    with pytest.raises(VerificationError) as err:
        Pipeline(["eliminate-identity", PerturbWeight()], floor_multiple=None).run(
            make_dynamic_model(), DYN_SHAPES
        )
    msg = str(err.value)
    assert "stage 02 'test-perturb-weight'" in msg
    assert "output 'y'" in msg and "worst element [" in msg and "abs err" in msg
    assert "atol 1e-05, rtol 0.0001" in msg  # exactly as given: no noise floor asked for


def test_tolerance_can_be_loosened_per_pass_and_per_run():
    loose = Tolerance(atol=10.0, rtol=0.0)
    Pipeline([PerturbWeight()], tolerances={"test-perturb-weight": loose}).run(
        make_dynamic_model(), DYN_SHAPES
    )
    Pipeline([PerturbWeight()], tolerance=loose).run(make_dynamic_model(), DYN_SHAPES)
    with pytest.raises(VerificationError):
        Pipeline([PerturbWeight()], tolerances={"other-pass": loose}).run(make_dynamic_model(), DYN_SHAPES)


def test_stale_static_annotation_does_not_freeze_a_dynamic_dim():
    """An exporter's wrong 'width=100' annotation must not be folded into the graph."""
    result = Pipeline(["fold-constants", "remove-dead-nodes", "infer-shapes"]).run(
        make_dynamic_model(stale_width=100), "x:1x3x8x30,2x3x8x64,3x3x8x100"
    )
    assert _input_dims(result.model) == ["batch", 3, 8, "width"]


def test_fix_dims_restricts_verification_to_accepted_shapes():
    result = Pipeline(["fix-dims(x.0=2)", "fold-constants"]).run(make_dynamic_model(), DYN_SHAPES)
    assert _input_dims(result.model) == [2, 3, 8, "width"]
    assert result.stages[1].verified == "yes"
    assert {c["shapes"]["x"][0] for c in result.stages[1].comparisons} == {2}


def test_missing_shape_for_dynamic_dim_names_input_and_dim():
    with pytest.raises(OcrgraftError, match=r"input 'x' .* leaves dim 0 \('batch'\) open"):
        Pipeline(["lift-constants"]).run(make_dynamic_model())


@pytest.mark.parametrize(
    "spec, message",
    [
        ("x:1x3x8", "has rank 4"),
        ("x:1x4x8x16", "dim 1 is fixed at 3"),
        ("y:1x3x8x16", "the model's inputs are: x"),
        ("x:1x3x8x0", "dims must be positive"),
        ("x1x3x8x16", "expected NAME:MIN"),
    ],
)
def test_bad_shapes_are_refused(spec, message):
    with pytest.raises(OcrgraftError, match=message):
        Pipeline(["lift-constants"]).run(make_dynamic_model(), spec)


def test_python_api_calls_a_pass_directly_on_a_model():
    result = ocrgraft.get_pass("eliminate-identity")(make_dynamic_model())
    assert result.rewrites == 1 and result.modified
    assert isinstance(result.model, ir.Model)


def test_shape_set_cases_and_opt():
    s = ShapeSet.parse("x:1x3x8x16,2x3x8x40,3x3x8x64")
    assert [label for label, _ in s.cases()] == ["min", "opt", "max"]
    assert s.opt() == {"x": (2, 3, 8, 40)}
    assert [label for label, _ in ShapeSet.parse("x:1x3x8x16").cases()] == ["opt"]


def test_a_crashing_pass_becomes_one_clear_error():
    class Broken(ocrgraft.Pass):
        """Raises inside."""

        name = "test-broken"

        def rewrite(self, model):
            raise KeyError("boom")

    with pytest.raises(OcrgraftError, match="pass 'test-broken' failed on this model: KeyError"):
        Pipeline([Broken()]).run(make_dynamic_model(), DYN_SHAPES)


def test_a_loosened_pass_loosens_later_checks_against_the_source():
    """After a pass with its own wider tolerance (fp16-like), exact passes compare with the source at
    that wider tolerance, and with the previous stage at their own."""
    loose = Tolerance(atol=10.0, rtol=0.0)
    result = Pipeline(
        [PerturbWeight(), "eliminate-identity", "lift-constants"], tolerances={"test-perturb-weight": loose}
    ).run(make_dynamic_model(), DYN_SHAPES)
    assert [s.verified for s in result.stages[1:]] == ["yes", "yes", "yes"]
    assert result.stages[3].max_abs > 1e-3 and result.stages[3].max_abs_prev == 0.0


def test_source_that_onnxruntime_cannot_load_is_checked_through_the_framework_reference():
    class SetIrVersion(ocrgraft.Pass):
        """Test only: declare an IR version ONNX Runtime reads."""

        name = "test-ir-version"

        def rewrite(self, model):
            changed = model.ir_version != 8
            model.ir_version = 8
            return int(changed)

    proto = make_dynamic_model()
    proto.ir_version = 99  # too new for ONNX Runtime
    clean = make_dynamic_model()
    framework = Runner(clean.SerializeToString()).run  # stands for torch / paddle here
    result = Pipeline([SetIrVersion(), "lift-constants"]).run(
        proto, DYN_SHAPES, source=framework, source_name="torch"
    )
    assert result.stages[0].verified.startswith("not checked: ONNX Runtime cannot load the torch model")
    assert result.stages[1].verified == "yes" and result.stages[2].verified == "yes"


def test_minus_one_dims_count_as_open():
    proto = make_dynamic_model()
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    with pytest.raises(OcrgraftError, match=r"leaves dim 0 \('-1'\) open"):
        Pipeline(["lift-constants"]).run(proto)
    assert Pipeline(["lift-constants"]).run(proto, DYN_SHAPES).stages[1].verified == "yes"


def test_stages_keep_each_weight_once(tmp_path):
    """A 147 KB Conv weight that no pass changes is stored once for all stages (stages/weights.bin, ONNX
    external data); every stage file still loads and runs on its own path."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 64, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["x"], ["i"]),
            helper.make_node("Conv", ["i", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"]),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64, 8, 8])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    result = Pipeline(["eliminate-identity", "infer-shapes"], stages_dir=tmp_path).run(
        model, "x:1x64x8x8,2x64x8x8"
    )
    files = [Path(s.file) for s in result.stages if s.file]
    assert len(files) >= 2 and (tmp_path / "weights.bin").stat().st_size == weight.nbytes
    assert all(f.stat().st_size < 4096 for f in files)
    feeds = {"x": rng.normal(size=(1, 64, 8, 8)).astype(np.float32)}
    for f in files:
        staged = onnx.load(f)  # external data read from beside the file
        assert np.array_equal(numpy_helper.to_array(staged.graph.initializer[0]), weight)
        out = Runner(load(f)).run(feeds)["y"]
        assert out.shape == (1, 64, 8, 8)


def test_outputs_kept_from_the_checks_are_the_raw_and_final_models_own():
    """Parity reads these instead of running the models again, so they must be exactly what ONNX
    Runtime gives for the exported model and for the final one; after a change nothing ran for, none."""
    proto = make_dynamic_model()
    framework = Runner(proto.SerializeToString()).run  # stands for torch / paddle here
    result = Pipeline(
        [PerturbWeight(), "lift-constants"], tolerances={"test-perturb-weight": Tolerance(10, 0)}
    ).run(make_dynamic_model(), DYN_SHAPES, source=framework, source_name="torch")
    raw, final = Runner(proto.SerializeToString()), Runner(result.model)
    assert set(result.final_outputs) == {c.title for c in result.cases}
    for case in result.cases:
        np.testing.assert_array_equal(result.raw_outputs[case.title]["y"], raw.run(case.feeds)["y"])
        np.testing.assert_array_equal(result.final_outputs[case.title]["y"], final.run(case.feeds)["y"])
    unchecked = Pipeline(["lift-constants"], verify=False).run(make_dynamic_model())
    assert unchecked.final_outputs is None and unchecked.raw_outputs is None
