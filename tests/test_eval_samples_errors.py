"""Damaged inputs to `ocrgraft eval` and interrupted `ocrgraft samples` runs get one line and leave
nothing behind; pictures draw names from non-UTF-8 file names and labels the font lacks, quietly."""

from __future__ import annotations

import json
import random
import shutil
import warnings

import pytest

from ocrgraft.converter.cli import main
from ocrgraft.converter.pictures import draw
from ocrgraft.core import samples
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.models.train_lprnet import write_set

from conftest import cli_error


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """lprnet converted for ONNX Runtime (a few seconds), and four labelled plates to evaluate it on."""
    root = tmp_path_factory.mktemp("eval")
    assert main(["convert", "lprnet", "--target", "ort", "--out", str(root / "out")]) == 0
    write_set(root / "plates", 4, random.Random(1))
    return root / "out" / "lprnet-ort", root / "plates"


@pytest.fixture
def copy(converted, tmp_path):
    """A fresh copy of the conversion to damage, and the plates."""
    out = shutil.copytree(converted[0], tmp_path / "lprnet-ort")
    return out, converted[1]


def test_eval_reads_plates_without_glyph_warnings(copy, capsys):
    out, plates = copy
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(out), "--images", str(plates)]) == 0
    assert not [w for w in caught if "Glyph" in str(w.message)]  # lprnet's labels are Chinese
    rows = json.loads((out / "report.json").read_text())["accuracy"]["rows"]
    assert [r["artifact"] for r in rows] == ["raw ONNX", "final ONNX"]


@pytest.mark.parametrize(
    "name, text, needle",
    [
        ("report.json", '{"x": 1}', "report.json is not a conversion report (no 'target'); convert again"),
        ("report.json", "[1, 2]", "report.json is not a conversion report (not a JSON object)"),
        ("recipe.json", "[1, 2]", "recipe.json is not a conversion's recipe (not a JSON object)"),
        (
            "recipe.json",
            '{"decoder": {"kind": "ctc", "charset": "ab"}}',
            "recipe.json is not a conversion's recipe (no 'shapes')",
        ),
    ],
)
def test_eval_names_a_damaged_json_file(copy, capsys, name, text, needle):
    out, plates = copy
    (out / name).write_text(text)
    err = cli_error(capsys, "eval", out, "--images", plates)
    assert str(out / name) in err and needle in err


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda out: (out / "model.onnx").write_bytes(b""), "model.onnx is empty"),
        (
            lambda out: (out / "model.onnx").write_bytes(b"\x08\x07garbage" * 50),
            "model.onnx is not a valid ONNX",
        ),
        (lambda out: (out / "stages" / "weights.bin").unlink(), "'weights.bin' is missing"),
    ],
)
def test_eval_fails_on_a_model_it_cannot_load_and_writes_nothing(copy, capsys, damage, named):
    out, plates = copy
    damage(out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    err = cli_error(capsys, "eval", out, "--images", plates)
    assert named in err and str(out) in err and "convert again" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def _report(model: str) -> dict:
    stage = {"index": 0, "name": "source", "max_abs": 0.0, "nodes": 5, "op_delta": {}}
    return {"model": model, "target": "ort", "stages": [stage], "tolerance": {"atol": 1e-4}}


def test_pictures_draw_a_name_from_a_non_utf8_file_name(tmp_path):
    name = b"bad\xff\xfename".decode("utf-8", "surrogateescape")  # as Python reads such a file name
    assert draw(_report(name), tmp_path) == ["stage_errors.png", "stage_nodes.png"]
    assert (tmp_path / "stage_errors.png").read_bytes()[:4] == b"\x89PNG"


def test_pictures_of_labels_the_font_lacks_warn_nothing(tmp_path):
    image = tmp_path / "plate.png"
    samples.render_line("A12345", random.Random(0)).save(image)
    report = _report("lprnet")
    report["accuracy"] = {
        "kind": "recognizer",
        "rows": [{"artifact": "final ONNX"}],
        "per_image": [{"image": "plate.png", "label": "贵A12345", "final ONNX": "贵A1234"}],
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "readings.png" in draw(report, tmp_path, {"plate.png": image})
    assert not [w for w in caught if "Glyph" in str(w.message)]


@pytest.mark.parametrize(
    "count, pages, needle", [(0, 0, "--count 0"), (-1, 0, "--count -1"), (2, -2, "--pages -2")]
)
def test_samples_refuse_a_count_or_pages_out_of_range(tmp_path, count, pages, needle):
    with pytest.raises(OcrgraftError, match=needle):
        samples.write_samples(tmp_path / "s", count=count, pages=pages)
    assert not (tmp_path / "s").exists()


def _interrupt_at(monkeypatch, n: int) -> None:
    """Ctrl-C while the n-th line is rendered."""
    render, calls = samples.render_line, []

    def render_line(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return render(*args, **kwargs)

    monkeypatch.setattr(samples, "render_line", render_line)


def test_interrupted_samples_leave_no_folder(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 4)
    assert main(["samples", str(tmp_path / "new" / "lines"), "--count", "10"]) != 0
    assert "nothing was written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the folder, its parent, nor a temporary folder


def test_interrupted_samples_keep_the_users_empty_folder(tmp_path, monkeypatch):
    (tmp_path / "lines").mkdir()
    _interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        samples.write_samples(tmp_path / "lines", count=10)
    assert [p.name for p in tmp_path.iterdir()] == ["lines"] and not any((tmp_path / "lines").iterdir())


def test_samples_fill_the_users_empty_folder(tmp_path):
    (tmp_path / "lines").mkdir()
    samples.write_samples(tmp_path / "lines", count=3, pages=1)
    assert sorted(p.name for p in (tmp_path / "lines").glob("*.png")) == [
        f"line_{i:03d}.png" for i in range(3)
    ]
    assert len((tmp_path / "lines" / "labels.txt").read_text().splitlines()) == 3
    assert [p.name for p in (tmp_path / "lines" / "pages").iterdir()] == ["page_000.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["lines"]
