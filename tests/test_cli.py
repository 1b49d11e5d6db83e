"""The command line as a user meets it: the real PP-OCRv4 conversion, apply, inspect, compare, view,
and one clear line (no traceback, nothing written, input untouched) for every kind of bad input."""

import hashlib
import json
import subprocess
import sys
import urllib.request

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ocrgraft.converter.cli import main
from ocrgraft.core.modelio import load
from ocrgraft.core.runner import Runner
from ocrgraft.core.shapes import random_inputs
from ocrgraft.passes import GENERIC_PASSES

from conftest import DYN_SHAPES, make_dynamic_model, run_cli
from perturb import PerturbWeight  # noqa: F401  (registers test-perturb-weight)

PPOCR_SHAPES = "x:1x3x48x32,1x3x48x320,8x3x48x1280"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def ppocr_conversion(tmp_path_factory, ppocr_rec):
    out = tmp_path_factory.mktemp("out")
    before = sha(ppocr_rec)
    rc = main(
        ["convert", "--onnx", str(ppocr_rec), "--target", "ort", "--shapes", PPOCR_SHAPES, "--out", str(out)]
    )
    assert rc == 0
    assert sha(ppocr_rec) == before, "the input model was modified"
    return out / "ch_PP-OCRv4_rec_infer-ort"


def test_convert_real_ppocr_writes_the_layout(ppocr_conversion):
    d = ppocr_conversion
    assert sorted(p.name for p in d.iterdir()) == [
        ".ocrgraft-manifest.json",
        "model.onnx",
        "recipe.json",
        "report.json",
        "report.md",
        "stage_errors.png",
        "stage_nodes.png",
        "stages",
    ]
    stages = sorted(p.name for p in (d / "stages").glob("*.onnx"))
    assert (d / "stages" / "weights.bin").stat().st_size > 1_000_000  # the weights, once for every stage
    report = json.loads((d / "report.json").read_text())
    changed = [f"{s['index']:02d}_{s['name']}.onnx" for s in report["stages"][1:] if s["verified"] == "yes"]
    # a file for the source and for each stage that changed the graph; none for a pass that changed nothing
    assert stages == ["00_source.onnx", *changed] and len(changed) < len(GENERIC_PASSES)
    onnx.checker.check_model(onnx.load(d / "model.onnx"))


def test_convert_report_has_every_stage_verified(ppocr_conversion):
    report = json.loads((ppocr_conversion / "report.json").read_text())
    assert report["all_verified"] and report["build"]["built"]
    assert report["shapes"] == {"x": [[1, 3, 48, 32], [1, 3, 48, 320], [8, 3, 48, 1280]]}
    for stage in report["stages"]:
        assert {"name", "rewrites", "nodes", "op_delta", "seconds", "verified", "max_abs", "max_rel"} <= set(
            stage
        )
        assert stage["verified"] in ("reference", "yes", "unchanged")
    changed = [s for s in report["stages"] if s["verified"] == "yes"]
    assert changed and all(s["max_abs"] is not None and s["max_abs"] <= 1e-4 for s in changed)
    assert report["stages"][-1]["nodes"] < report["stages"][0]["nodes"]
    assert report["build"]["details"]["latency_ms"] > 0
    md = (ppocr_conversion / "report.md").read_text()
    assert "| 02 | [lift-constants](stages/02_lift-constants.onnx) | exact |" in md
    assert "every stage verified: **yes**" in md


def test_final_ppocr_model_stays_dynamic_in_batch_and_width(ppocr_conversion, ppocr_rec):
    final = load(ppocr_conversion / "model.onnx")
    dims = list(final.graph.inputs[0].shape)
    assert not isinstance(dims[0], int) and not isinstance(dims[3], int)
    ref, got = Runner(load(ppocr_rec)), Runner(final)
    for i, shape in enumerate([(2, 3, 48, 100), (5, 3, 48, 640)]):
        feeds = random_inputs(list(final.graph.inputs), {"x": shape}, seed=50 + i)
        np.testing.assert_allclose(
            got.run(feeds)["softmax_11.tmp_0"], ref.run(feeds)["softmax_11.tmp_0"], atol=1e-5, rtol=1e-4
        )


def test_convert_zoo_recipe_by_name(tmp_path, capsys):
    rc, out, err = run_cli(
        capsys,
        "convert",
        "ppocrv4-rec",
        "--out",
        tmp_path,
        "--passes",
        "eliminate-identity",
        "--shapes",
        "x:1x3x48x32,2x3x48x96",
    )
    assert rc == 0, err
    assert "every stage verified" in out
    assert (tmp_path / "ppocrv4-rec-ort" / "stages" / "00_source.onnx").exists()
    assert not (tmp_path / "ppocrv4-rec-ort" / "stages" / "01_eliminate-identity.onnx").exists()  # unchanged
    assert "[1/1] eliminate-identity" in err  # progress goes to stderr


def test_apply_keeps_batch_and_width_dynamic_and_outputs_equal(tmp_path, dynamic_model_file, capsys):
    out = tmp_path / "out.onnx"
    rc, stdout, err = run_cli(
        capsys,
        "apply",
        dynamic_model_file,
        out,
        "-p",
        "eliminate-identity,lift-constants,fold-constants,remove-dead-nodes",
        "--shapes",
        DYN_SHAPES,
    )
    assert rc == 0, err
    assert "stage(s) verified on 6 inputs" in stdout
    model = load(out)
    assert [d if isinstance(d, int) else d.value for d in model.graph.inputs[0].shape] == [
        "batch",
        3,
        8,
        "width",
    ]
    src, got = Runner(load(dynamic_model_file)), Runner(model)
    for i, shape in enumerate([(1, 3, 8, 16), (2, 3, 8, 40), (3, 3, 8, 64)]):
        feeds = random_inputs(list(model.graph.inputs), {"x": shape}, seed=i)
        np.testing.assert_allclose(got.run(feeds)["y"], src.run(feeds)["y"], atol=1e-5, rtol=1e-4)


def test_passes_lists_docs_and_filters_by_target(capsys):
    rc, out, _ = run_cli(capsys, "passes")
    assert rc == 0 and "fold-constants" in out and "keeping dynamic dims dynamic" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line[:1].strip()}
    assert "run by every target (generic)" in lines["merge-duplicates"]
    assert "run by ascend;" in lines["split-pool"] and "run by opt-in" in lines["to-fp16"]
    rc, out, _ = run_cli(capsys, "passes", "--target", "ort")
    assert rc == 0 and "eliminate-identity" in out and "split-pool" not in out
    rc, out, _ = run_cli(capsys, "passes", "--target", "ascend")  # what the target declares it runs
    assert rc == 0 and "split-pool" in out and "eliminate-identity" in out and "maxpool3d-to-2d" not in out


def test_inspect_shows_io_dynamic_dims_opset_and_histogram(ppocr_rec, capsys):
    rc, out, _ = run_cli(capsys, "inspect", ppocr_rec)
    assert rc == 0
    assert "opset ai.onnx 12" in out
    assert (
        "input  x: FLOAT [p2o.DynamicDimension.0,3,?,p2o.DynamicDimension.1]  dynamic dims [0, 2, 3]" in out
    )
    assert "nodes: 860" in out and "Constant" in out


def test_compare_reports_per_output_errors(tmp_path, dynamic_model_file, capsys):
    good = tmp_path / "good.onnx"
    assert (
        main(["apply", str(dynamic_model_file), str(good), "-p", "lift-constants", "--shapes", DYN_SHAPES])
        == 0
    )
    capsys.readouterr()
    rc, out, _ = run_cli(capsys, "compare", dynamic_model_file, good, "--shapes", DYN_SHAPES)
    assert rc == 0 and "all outputs match" in out and out.count(" y ") == 3
    bad = tmp_path / "bad.onnx"
    assert (
        main(
            [
                "apply",
                str(dynamic_model_file),
                str(bad),
                "-p",
                "test-perturb-weight",
                "--shapes",
                DYN_SHAPES,
                "--atol",
                "100",
            ]
        )
        == 0
    )
    capsys.readouterr()
    rc, out, err = run_cli(capsys, "compare", dynamic_model_file, bad, "--shapes", DYN_SHAPES)
    assert rc == 1 and "NO: output 'y' worst element" in out and "exceed the tolerance" in err


def test_view_serves_a_model_in_netron(dynamic_model_file, capsys):
    rc, out, _ = run_cli(capsys, "view", dynamic_model_file, "--port", "18731", "--no-wait")
    assert rc == 0 and "1 file(s) in Netron: http://127.0.0.1:18731/" in out
    assert "dyn.onnx" in out and "http://127.0.0.1:18731/m/dyn.onnx/" in out


# ---- bad input: one line on stderr, exit 1, nothing written, input untouched ----------------------


def _assert_clean_failure(rc, out, err, message, out_dir=None):
    assert rc == 1
    lines = err.strip().splitlines()  # progress lines may come first; the error is the one last line
    assert lines[-1].startswith("ocrgraft: error: ") and message in lines[-1], err
    assert sum("error" in line for line in lines) == 1, err
    assert "Traceback" not in err + out
    if out_dir is not None:
        assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())


def test_missing_file(tmp_path, capsys):
    out = tmp_path / "out"
    rc, o, e = run_cli(capsys, "convert", "--onnx", tmp_path / "nope.onnx", "--out", out)
    _assert_clean_failure(rc, o, e, "no such file", out)


def test_corrupt_file(tmp_path, capsys):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(5000))
    out = tmp_path / "out"
    rc, o, e = run_cli(capsys, "convert", "--onnx", bad, "--out", out, "--shapes", "x:1x3")
    _assert_clean_failure(rc, o, e, "not a valid ONNX model", out)


def test_truncated_file(tmp_path, ppocr_rec, capsys):
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(ppocr_rec.read_bytes()[: ppocr_rec.stat().st_size // 2])
    before = sha(bad)
    out = tmp_path / "out"
    rc, o, e = run_cli(capsys, "convert", "--onnx", bad, "--out", out, "--shapes", PPOCR_SHAPES)
    _assert_clean_failure(rc, o, e, "truncated", out)
    assert sha(bad) == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["convert", "no-such-model"], "unknown model 'no-such-model'"),
        (["convert", "ppocrv4-rec", "--target", "tpu"], "unknown target 'tpu'"),
        (
            ["convert", "ppocrv4-rec", "--passes", "fold-constant"],
            "unknown pass 'fold-constant' (did you mean 'fold-constants'?)",
        ),
        (["convert", "ppocrv4-rec", "--shapes", "x:1x3x48"], "has rank 4"),
        (["convert", "ppocrv4-rec", "--shapes", "x:1x4x48x32"], "dim 1 is fixed at 3"),
    ],
)
def test_unknown_names_and_wrong_shapes(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    rc, o, e = run_cli(capsys, *argv, "--out", out)
    _assert_clean_failure(rc, o, e, message, out)


def test_open_dim_without_shapes_names_input_and_dim(tmp_path, dynamic_model_file, capsys):
    out = tmp_path / "out"
    rc, o, e = run_cli(capsys, "convert", "--onnx", dynamic_model_file, "--out", out)
    _assert_clean_failure(rc, o, e, "input 'x' [batch,3,8,width] leaves dim 0 ('batch') open", out)


def test_pass_that_breaks_numerics_writes_only_its_failure_folder(tmp_path, dynamic_model_file, capsys):
    before = sha(dynamic_model_file)
    out = tmp_path / "out"
    rc, o, e = run_cli(
        capsys,
        "convert",
        "--onnx",
        dynamic_model_file,
        "--out",
        out,
        "--shapes",
        DYN_SHAPES,
        "--passes",
        "eliminate-identity,test-perturb-weight",
    )
    _assert_clean_failure(rc, o, e, "stage 02 'test-perturb-weight' changed the outputs", out / "dyn-ort")
    # nothing but the failure folder: the stages so far, the pair and what to try
    assert sorted(p.name for p in out.iterdir()) == ["dyn-ort.failed"] and str(out / "dyn-ort.failed") in e
    assert (out / "dyn-ort.failed" / "failure.md").is_file()
    dest = tmp_path / "applied.onnx"
    rc, o, e = run_cli(
        capsys, "apply", dynamic_model_file, dest, "-p", "test-perturb-weight", "--shapes", DYN_SHAPES
    )
    _assert_clean_failure(rc, o, e, "output 'y' worst element")
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["dyn.onnx", "out"]
    assert sha(dynamic_model_file) == before


def test_failed_conversion_keeps_the_previous_good_output(tmp_path, dynamic_model_file, capsys):
    out = tmp_path / "out"
    assert (
        main(["convert", "--onnx", str(dynamic_model_file), "--out", str(out), "--shapes", DYN_SHAPES]) == 0
    )
    report = (out / "dyn-ort" / "report.json").read_bytes()
    rc, o, e = run_cli(
        capsys,
        "convert",
        "--onnx",
        dynamic_model_file,
        "--out",
        out,
        "--shapes",
        DYN_SHAPES,
        "--passes",
        "test-perturb-weight",
    )
    assert rc == 1
    assert (out / "dyn-ort" / "report.json").read_bytes() == report
    assert sorted(p.name for p in out.iterdir()) == ["dyn-ort", "dyn-ort.failed"]


def test_apply_refuses_to_overwrite_its_input(dynamic_model_file, capsys):
    before = sha(dynamic_model_file)
    rc, o, e = run_cli(
        capsys,
        "apply",
        dynamic_model_file,
        dynamic_model_file,
        "-p",
        "lift-constants",
        "--shapes",
        DYN_SHAPES,
    )
    _assert_clean_failure(rc, o, e, "the output would overwrite the input")
    assert sha(dynamic_model_file) == before


def test_module_entry_point_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ocrgraft", "convert", "--onnx", str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"ocrgraft: error: no such file: {tmp_path / 'x.onnx'}"


def test_a_model_written_by_the_newest_onnx_converts(tmp_path, capsys):
    """onnx's own IR version can be newer than ONNX Runtime reads: convert, apply and compare lower it,
    say so, and leave the user's file as it was."""
    from ocrgraft.core.runner import _newest_ir_version

    proto = make_dynamic_model()
    proto.ir_version = onnx.IR_VERSION
    src = tmp_path / "new.onnx"
    onnx.save(proto, src)
    before = src.read_bytes()
    newest = _newest_ir_version() or onnx.IR_VERSION
    rc, _, err = run_cli(capsys, "convert", "--onnx", src, "--out", tmp_path / "out", "--shapes", DYN_SHAPES)
    assert rc == 0, err
    report = (tmp_path / "out" / "new-ort" / "report.md").read_text()
    assert onnx.load(tmp_path / "out" / "new-ort" / "model.onnx").ir_version == newest
    rc, out, err = run_cli(
        capsys, "apply", src, tmp_path / "applied.onnx", "-p", "eliminate-identity", "--shapes", DYN_SHAPES
    )
    assert rc == 0, err
    assert onnx.load(tmp_path / "applied.onnx").ir_version == newest
    rc, _, err = run_cli(capsys, "compare", src, tmp_path / "applied.onnx", "--shapes", DYN_SHAPES)
    assert rc == 0, err
    if newest < onnx.IR_VERSION:  # so with onnx 1.23 (14) and ONNX Runtime 1.31 (13)
        assert f"ir_version {onnx.IR_VERSION} lowered to {newest}" in report
        assert f"ir_version {onnx.IR_VERSION} lowered to {newest}" in out + err
    assert src.read_bytes() == before


def test_source_with_external_data(tmp_path, capsys):
    """A model saved with its weights in a separate .data file converts into one self-contained file."""
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    proto = make_dynamic_model()
    onnx.save(
        proto,
        src_dir / "ext.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    assert (src_dir / "ext.onnx.data").exists()
    out = tmp_path / "out"
    rc, o, e = run_cli(
        capsys, "convert", "--onnx", src_dir / "ext.onnx", "--out", out, "--shapes", DYN_SHAPES
    )
    assert rc == 0, e
    final = onnx.load(out / "ext-ort" / "model.onnx", load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in final.graph.initializer)
    (src_dir / "ext.onnx.data").unlink()
    rc, o, e = run_cli(
        capsys, "convert", "--onnx", src_dir / "ext.onnx", "--out", tmp_path / "out2", "--shapes", DYN_SHAPES
    )
    _assert_clean_failure(rc, o, e, "external data", tmp_path / "out2")


def test_view_serves_every_stage_of_a_conversion_from_one_port(tmp_path, dynamic_model_file, capsys):
    """One port: an index of the stages, Netron's app per stage reading that file; a taken port moves on
    to the next free one."""
    import socket

    from ocrgraft.converter.view import serve

    out = tmp_path / "out"
    argv = ["convert", "--onnx", str(dynamic_model_file), "--out", str(out), "--shapes", DYN_SHAPES]
    assert main([*argv, "--passes", "eliminate-identity"]) == 0
    capsys.readouterr()
    files = sorted((out / "dyn-ort" / "stages").glob("*.onnx")) + [out / "dyn-ort" / "model.onnx"]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 18741))
        server, address = serve(files, "dyn-ort", "127.0.0.1", 18741)
    try:
        assert address == "http://127.0.0.1:18742/"
        with urllib.request.urlopen(address, timeout=10) as page:
            index = page.read().decode()
        assert all(f'href="/m/{f.name}/"' in index for f in files) and "consent" in index
        stage = f"{address}m/01_eliminate-identity.onnx/"
        with urllib.request.urlopen(stage, timeout=10) as page:
            app = page.read().decode()
        assert (
            '<meta name="file" content="/m/01_eliminate-identity.onnx/data/01_eliminate-identity.onnx">'
            in app
        )
        with urllib.request.urlopen(stage + "data/01_eliminate-identity.onnx", timeout=10) as data:
            assert data.read() == files[1].read_bytes()
        with urllib.request.urlopen(stage + "index.js", timeout=10) as script:  # Netron's own files
            assert script.status == 200
        for bad in ("m/nope.onnx/", "m/model.onnx/data/../report.json"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(address + bad, timeout=10)
    finally:
        server.shutdown()
    rc, o, e = run_cli(capsys, "view", tmp_path / "nothing-here")
    _assert_clean_failure(rc, o, e, "no such file or folder")


def test_version_quiet_json_and_name(tmp_path, dynamic_model_file, capsys):
    from ocrgraft.core import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"ocrgraft {__version__}"
    out = tmp_path / "out"
    args = ["convert", "--onnx", dynamic_model_file, "--out", out, "--shapes", DYN_SHAPES]
    rc, o, e = run_cli(capsys, "-q", *args, "--json", "--name", "first")
    assert rc == 0 and e == ""  # quiet: no progress lines
    summary = json.loads(o)
    assert summary["out_dir"] == str(out / "first-ort") and summary["all_verified"] and summary["stages"] > 0
    rc, o, e = run_cli(capsys, *args, "--name", "second")  # another name: another folder
    assert rc == 0 and "[0/" in e and sorted(p.name for p in out.iterdir()) == ["first-ort", "second-ort"]
    rc, o, e = run_cli(capsys, *args, "--name", "../escape")
    _assert_clean_failure(rc, o, e, "--name '../escape': give a plain folder name")


def test_every_verb_that_reports_has_json(tmp_path, dynamic_model_file, capsys):
    """--json: one JSON document on stdout, whatever the verb; a failed compare still exits non-zero."""
    rc, o, _ = run_cli(capsys, "passes", "--json")
    passes = {p["name"]: p for p in json.loads(o)["passes"]}
    assert rc == 0 and passes["split-pool"]["arguments"] == {"max_kernel": "255"}
    rc, o, _ = run_cli(capsys, "inspect", dynamic_model_file, "--json")
    info = json.loads(o)
    assert rc == 0 and info["inputs"][0]["shape"][0] == "batch" and sum(info["ops"].values()) == info["nodes"]
    dest = tmp_path / "y.onnx"
    rc, o, _ = run_cli(
        capsys,
        "-q",
        "apply",
        dynamic_model_file,
        dest,
        "-p",
        "fold-constants",
        "--shapes",
        DYN_SHAPES,
        "--json",
    )
    applied = json.loads(o)
    assert rc == 0 and applied["verified"] and applied["stages"][0]["name"] == "source" and dest.is_file()
    rc, o, _ = run_cli(capsys, "compare", dynamic_model_file, dest, "--shapes", DYN_SHAPES, "--json")
    compared = json.loads(o)
    assert rc == 0 and compared["ok"] and len(compared["comparisons"]) >= 3
    other = onnx.load(dynamic_model_file)  # the same graph with one weight moved: a compare that fails
    weight = other.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 1, weight.name))
    onnx.save(other, tmp_path / "other.onnx")
    rc, o, e = run_cli(
        capsys, "compare", dynamic_model_file, tmp_path / "other.onnx", "--shapes", DYN_SHAPES, "--json"
    )
    assert rc != 0 and not json.loads(o)["ok"] and "exceed the tolerance" in e


def test_passes_list_their_arguments_and_a_bad_argument_names_the_valid_ones(
    tmp_path, dynamic_model_file, capsys
):
    rc, o, e = run_cli(capsys, "passes")
    assert rc == 0 and "split-pool" in o and "arguments: max_kernel=255" in o
    assert "arguments: INPUT.AXIS=SIZE" in o  # fix-dims names its own keys
    dest = tmp_path / "y.onnx"
    rc, o, e = run_cli(
        capsys, "apply", dynamic_model_file, dest, "-p", "split-pool(maxk=3)", "--shapes", DYN_SHAPES
    )
    _assert_clean_failure(rc, o, e, "pass 'split-pool' has no argument maxk; it takes max_kernel=255")
    rc, o, e = run_cli(
        capsys, "apply", dynamic_model_file, dest, "-p", "eliminate-identity(x=1)", "--shapes", DYN_SHAPES
    )
    _assert_clean_failure(rc, o, e, "it takes no arguments")
    rc, o, e = run_cli(
        capsys, "apply", dynamic_model_file, dest, "-p", "rename-dims(x.0=batch)", "--shapes", DYN_SHAPES
    )
    assert rc == 0 and dest.is_file()


def test_apply_without_verification_needs_no_shapes_and_says_so(tmp_path, dynamic_model_file, capsys):
    out = tmp_path / "out.onnx"
    assert main(["apply", str(dynamic_model_file), str(out), "-p", "eliminate-identity"]) == 1
    assert "(or --no-verify to rewrite without checking)" in capsys.readouterr().err
    rc = main(["apply", str(dynamic_model_file), str(out), "-p", "eliminate-identity", "--no-verify"])
    printed = capsys.readouterr()
    assert rc == 0 and "NOT verified (--no-verify)" in printed.out and "verification off" in printed.err
    assert "Identity" not in {n.op_type for n in onnx.load(out).graph.node}
