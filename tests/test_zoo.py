"""Every zoo model, with both of torch 2.13's exporters, converts to ONNX Runtime: the exported graph
and every later stage match the torch model at min / opt / max shapes, and the final model reads the
same text (or text mask) as torch. Real torch, real ONNX Runtime.

Each model converts with its recipe's exporter at the recipe's own range, and with the other exporter
at a smaller range inside it (the cost on a 2-core CPU is in the large shapes), loading weights saved in
one of the checkpoint forms; every model x form is also loaded in tests/test_torch_frontend.py."""

import numpy as np
import pytest
import torch

from ocrgraft import models
from ocrgraft.converter.convert import convert
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.converter.recipes import get_recipe
from ocrgraft.core.modelio import load
from ocrgraft.core.runner import Runner
from ocrgraft.core.shapes import ShapeSet
from ocrgraft.passes import GENERIC_PASSES

from conftest import EXACT_FAMILY
from zoo_weights import FORMS, save_weights, trained

# model, exporter, weights form (None: random init), shapes (None: the recipe's)
CASES = [
    ("crnn", "torchscript", "checkpoint", None),
    ("crnn", "dynamo", "state_dict", "imgs:1x1x32x32,2x1x32x64,4x1x32x128"),
    ("dtrb", "torchscript", None, None),
    ("dtrb", "dynamo", "dataparallel", "input:1x3x32x64,2x3x32x100,3x3x32x128"),
    ("lprnet", "torchscript", None, None),
    ("lprnet", "dynamo", "torchscript", None),  # the Sophon seed's torch.jit.trace file
    ("mmocr-crnn", "torchscript", None, None),
    ("mmocr-crnn", "dynamo", "state_dict", "input:1x1x32x32,2x1x32x64,3x1x32x96"),
    ("dbnet", "dynamo", None, None),
    ("dbnet", "torchscript", "checkpoint", "input:1x3x64x64,1x3x96x128,1x3x160x160"),
    ("psenet", "dynamo", None, None),
    ("psenet", "torchscript", "mmocr-0.x", "input:1x3x64x64,1x3x96x128,2x3x128x128"),
    ("panet", "dynamo", None, None),
    ("panet", "torchscript", "mmocr-0.x", "input:1x3x64x64,1x3x96x128,2x3x128x128"),
]
IDS = [f"{m}-{e}" for m, e, _, _ in CASES]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each case converted once per module, shared by the tests below."""
    done = {}

    def get(name, exporter):
        if (name, exporter) not in done:
            _, _, form, shapes = next(c for c in CASES if c[:2] == (name, exporter))
            tmp = tmp_path_factory.mktemp(f"{name}-{exporter}")
            weights = save_weights(trained(name), name, form, tmp / "w.pt") if form else None
            done[name, exporter] = convert(
                name,
                target="ort",
                out=tmp / "out",
                exporter=exporter,
                shapes=shapes,
                weights=weights,
                progress=lambda m: None,
            )
        return done[name, exporter]

    return get


@pytest.mark.parametrize("name,exporter,form,shapes", CASES, ids=IDS)
def test_zoo_model_converts_and_verifies(converted, name, exporter, form, shapes):
    conv = converted(name, exporter)
    r, recipe = conv.report, get_recipe(name)
    assert r["all_verified"] and r["build"]["built"]
    expected = ShapeSet.parse(shapes) if shapes else recipe.shapes
    assert r["shapes"] == {k: [list(s) for s in v] for k, v in expected.shapes.items()}
    assert {c["label"].split("#")[0] for c in r["test_inputs"]} == {"min", "opt", "max"}
    assert r["stages"][0]["verified"] == "yes"  # the exported ONNX itself, against torch
    notes = r["source"]["notes"]
    assert any(f"exported with the {exporter} exporter" in n for n in notes)
    if form:
        assert any(n.startswith("weights: w.pt") for n in notes)
        if form == "mmocr-0.x":  # MMOCR 0.x's head names, read as 1.x's
            assert any("'bbox_head.*' read as 'det_head.*'" in n for n in notes)
        case = conv.result.cases[0]  # the reference ran the loaded weights
        with torch.inference_mode():
            want = trained(name)(*(torch.from_numpy(v) for v in case.feeds.values()))
        for got, w in zip(case.expected.values(), want if isinstance(want, tuple) else (want,), strict=True):
            np.testing.assert_array_equal(got, w.numpy())
    else:
        assert any("random initialization" in n for n in notes)
    # every dim the recipe varies is still open in the final model
    final = load(conv.out_dir / "model.onnx")
    for value in final.graph.inputs:
        cases = recipe.shapes.shapes[value.name]
        for axis, dim in enumerate(value.shape):
            assert isinstance(dim, int) == (len({s[axis] for s in cases}) == 1), (value.name, axis, dim)


@pytest.mark.parametrize("name,exporter,form,shapes", CASES, ids=IDS)
def test_zoo_model_reads_the_same(converted, name, exporter, form, shapes):
    conv = converted(name, exporter)
    p = conv.report["parity"]
    if p["kind"] == "ctc":
        assert p["all_agree"], p["summary"]
        assert p["samples"] >= 4 and any(r["torch"]["text"] for r in p["rows"])
    else:  # a pixel can sit within round-off of the threshold: flips must be rare, and errors tiny
        pixels = sum(r["pixels"] for r in p["rows"])
        tol = max(1e-4, get_recipe(name).options.get("verify", {}).get("atol", 0))  # deep nets: 1e-3
        assert p["max_abs"] < tol and p["mask_differs"] <= tol * pixels, p["summary"]
        assert all(
            0.1 * r["pixels"] < r["pixels_above"] < 0.9 * r["pixels"] for r in p["rows"]
        )  # a real mask
    assert p["sources"] == ["torch", "raw ONNX", "final ONNX"]
    assert "## Parity" in (conv.out_dir / "report.md").read_text()


@pytest.mark.parametrize("name,exporter,form,shapes", CASES, ids=IDS)
def test_all_exact_passes_keep_zoo_outputs_and_dynamic_dims(converted, name, exporter, form, shapes):
    """The exported graph through every semantics-preserving pass at once (whatever its target): each
    stage equal to the one before at the conversion's min/opt/max (atol 1e-5, rtol 1e-4), no dim fixed."""
    conv = converted(name, exporter)
    raw = load(conv.out_dir / "stages" / "00_source.onnx")
    dims = [[str(d) for d in v.shape] for v in raw.graph.inputs]
    result = Pipeline(list(GENERIC_PASSES) + EXACT_FAMILY, samples=1).run(
        raw, shapes=shapes or get_recipe(name).shapes
    )
    assert all(s.verified in ("yes", "unchanged") for s in result.stages[1:]), [
        s.verified for s in result.stages
    ]
    assert [[str(d) for d in v.shape] for v in result.model.graph.inputs] == dims


def test_lprnet_keeps_maxpool3d_for_ort_with_dynamo(converted):
    """The MaxPool3d rewrite is registered for sophon/trt (and the TorchScript exporter), not for ort."""
    dynamo = converted("lprnet", "dynamo")
    assert not any("maxpool3d-as-2d" in n for n in dynamo.report["source"]["notes"])
    pools = [n for n in load(dynamo.out_dir / "model.onnx").graph if n.op_type == "MaxPool"]
    assert any(len(n.attributes["kernel_shape"].value) == 3 for n in pools)
    ts = converted("lprnet", "torchscript")
    assert any("maxpool3d-as-2d" in n for n in ts.report["source"]["notes"])


def test_dtrb_pooling_rewrite_is_listed(converted):
    notes = converted("dtrb", "torchscript").report["source"]["notes"]
    assert any("adaptive-avgpool-to-mean" in n for n in notes)


WIDTHS, BATCHES = (32, 100, 320, 1000), (1, 3, 16)


@pytest.fixture(scope="module")
def crnn_torch_outputs():
    model = trained("crnn")  # both crnn conversions above load these weights
    rng = np.random.default_rng(5)
    cases = {}
    for w in WIDTHS:
        for b in BATCHES:
            x = rng.uniform(-1, 1, (b, 1, 32, w)).astype(np.float32)
            with torch.inference_mode():
                cases[b, w] = (x, model(torch.from_numpy(x)).numpy())
    return cases


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_crnn_stays_dynamic_end_to_end(converted, crnn_torch_outputs, exporter):
    """The final ONNX runs at widths 32..1000 and batches 1..16 (beyond the range checked during the
    conversion) and matches torch: nothing in the graph fixed the batch or the width."""
    runner = Runner((converted("crnn", exporter).out_dir / "model.onnx").read_bytes())
    for (b, w), (x, want) in crnn_torch_outputs.items():
        got = runner.run({"imgs": x})["output1"]
        assert got.shape == want.shape == (w // 4 + 1, b, 37)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"batch {b}, width {w}")


MATRIX = [(m, e, f) for m in models.ZOO for e in ("torchscript", "dynamo") for f in (None, *FORMS)]


@pytest.mark.slow
@pytest.mark.parametrize("name,exporter,form", MATRIX, ids=[f"{m}-{e}-{f or 'random'}" for m, e, f in MATRIX])
def test_full_matrix_converts_and_verifies(tmp_path, name, exporter, form):
    """Every model x exporter x weights form at the recipe's own min/opt/max (make test-slow)."""
    weights = save_weights(trained(name), name, form, tmp_path / "w.pt") if form else None
    conv = convert(
        name, target="ort", out=tmp_path / "out", exporter=exporter, weights=weights, progress=lambda m: None
    )
    r = conv.report
    assert r["all_verified"] and r["build"]["built"] and r["stages"][0]["verified"] == "yes"
    assert {c["label"].split("#")[0] for c in r["test_inputs"]} == {"min", "opt", "max"}
    notes = r["source"]["notes"]
    assert (
        any(n.startswith("weights: w.pt") for n in notes)
        if form
        else any("random initialization" in n for n in notes)
    )
    p = r["parity"]
    tol = max(1e-4, get_recipe(name).options.get("verify", {}).get("atol", 0))
    assert p["all_agree"] if p["kind"] == "ctc" else p["max_abs"] < tol, p["summary"]
