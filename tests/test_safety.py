"""Safe by default: nothing in a user's file runs, no user file is lost or changed, no check is claimed
that did not happen, and the environment's failures get one line that says what to do. Every case is
built from a real file: a crafted pickle, a TorchScript module that writes to disk, a process killed
with SIGTERM or SIGKILL part-way."""

import errno
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from ocrgraft import models
from ocrgraft.converter.cli import describe_os_error, main
from ocrgraft.converter.recipes import get_recipe
from ocrgraft.core import modelio
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.frontends.torch import load_source

from conftest import DYN_SHAPES, make_dynamic_model, run_cli

ROOT = Path(__file__).resolve().parents[1]


def one_line_error(rc, err, *needles):
    assert rc == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ocrgraft: error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in last, last
    return last


class RunsCode:
    """Unpickling this calls os.system: the classic crafted-pickle attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def dyn_file(tmp_path) -> Path:
    path = tmp_path / "dyn.onnx"
    onnx.save(make_dynamic_model(), path)
    return path


# ---- 1. no code execution from inputs ------------------------------------------------------------


def test_crafted_pdparams_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pdparams"
    weights.write_bytes(pickle.dumps({"fc.weight": RunsCode(marker)}))
    rc, _, err = run_cli(capsys, "convert", "paddle-crnn", "--weights", weights, "--out", tmp_path / "out")
    one_line_error(rc, err, "evil.pdparams is not read", "posix.system", "could run code")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_crafted_torchscript_pickle_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    with zipfile.ZipFile(weights, "w") as z:  # looks like TorchScript: code/ and constants.pkl
        z.writestr("evil/data.pkl", pickle.dumps(RunsCode(marker), protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps(()))
        z.writestr("evil/code/__torch__.py", "")
    rc, _, err = run_cli(capsys, "convert", "crnn", "--weights", weights, "--out", tmp_path / "out")
    one_line_error(rc, err, "refers to posix.system", "--trust-code")
    assert not marker.exists()


FILE_WRITING_MODULE = '''
import torch, torch.nn as nn, torch.nn.functional as F

class FileWritingCRNN(nn.Module):
    """The zoo CRNN's weights, with a forward that also writes into a file on disk."""

    def __init__(self, base, marker: str):
        super().__init__()
        self.cnn, self.rnn, self.marker = base.cnn, base.rnn, marker

    def forward(self, x):
        written = torch.from_file(self.marker, shared=True, size=4, dtype=torch.uint8).fill_(65)
        x = x + (written.sum() * 0).to(x.dtype)
        conv = self.cnn(x).squeeze(2).permute(2, 0, 1)
        return F.log_softmax(self.rnn(conv), dim=2)
'''


@pytest.fixture
def file_writing_torchscript(tmp_path, monkeypatch):
    """A real TorchScript file (torch.jit.script) whose forward writes b'AAAA' into `marker`."""
    (tmp_path / "file_writing.py").write_text(FILE_WRITING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from file_writing import FileWritingCRNN

    marker = tmp_path / "marker"
    marker.write_bytes(b"\0" * 4)
    path = tmp_path / "crnn_code.pt"
    torch.jit.script(FileWritingCRNN(models.build("crnn", seed=1), str(marker))).save(str(path))
    assert marker.read_bytes() == b"\0" * 4
    return path, marker


SMALL = "imgs:1x1x32x32,1x1x32x64,2x1x32x96"


def test_torchscript_weights_are_read_not_run(file_writing_torchscript):
    path, marker = file_writing_torchscript
    source = load_source(get_recipe("crnn"), weights=path, shapes=_shapes(SMALL))
    assert marker.read_bytes() == b"\0" * 4, "the TorchScript file's code ran"
    notes = " ".join(source.notes)
    assert "tensors read without running its code" in notes and "(--trust-code runs it)" in notes
    expected = models.build("crnn", seed=1).state_dict()  # the tensors did arrive
    feeds = {"imgs": np.random.default_rng(0).uniform(-1, 1, (1, 1, 32, 64)).astype(np.float32)}
    model = models.build("crnn", seed=0)
    model.load_state_dict(expected)
    with torch.inference_mode():
        want = model(torch.from_numpy(feeds["imgs"])).numpy()
    np.testing.assert_allclose(source.reference(feeds)[next(iter(source.reference(feeds)))], want, atol=1e-6)


def test_torchscript_runs_only_with_trust_code_and_says_so(file_writing_torchscript):
    path, marker = file_writing_torchscript
    source = load_source(get_recipe("crnn"), weights=path, shapes=_shapes(SMALL), trust_code=True)
    assert marker.read_bytes() == b"AAAA"  # it was run, as asked
    notes = " ".join(source.notes)
    assert "is code (TorchScript) and was run because --trust-code was given" in notes
    assert "agree at" in notes


def _shapes(text):
    from ocrgraft.core.shapes import ShapeSet

    return ShapeSet.parse(text)


def test_readme_states_what_runs():
    readme = (ROOT / "README.md").read_text()
    assert "## What ocrgraft runs from your files" in readme
    for word in ("pickle", "TorchScript", "--trust-code", "Paddle", "external data"):
        assert word in readme.split("## What ocrgraft runs from your files")[1].split("\n## ")[0], word


# ---- 2. no data loss --------------------------------------------------------------------------------


def _convert(out, model, *extra):
    return main(
        ["convert", "--onnx", str(model), "--out", str(out), "--shapes", DYN_SHAPES, *map(str, extra)]
    )


def test_convert_refuses_an_input_inside_its_output_folder(tmp_path, dyn_file, capsys):
    assert _convert(tmp_path, dyn_file) == 0
    dest = tmp_path / "dyn-ort"
    inner = dest / "dyn.onnx"  # the user's model, kept in the folder a conversion would replace
    inner.write_bytes(dyn_file.read_bytes())
    (dest / "notes.txt").write_text("mine")
    rc, _, err = run_cli(
        capsys, "convert", "--onnx", inner, "--out", tmp_path, "--shapes", DYN_SHAPES, "--force"
    )
    one_line_error(rc, err, "lies inside the output folder")
    assert inner.read_bytes() == dyn_file.read_bytes() and (dest / "notes.txt").read_text() == "mine"


def test_apply_refuses_to_write_a_stage_over_its_input(tmp_path, dyn_file, capsys):
    stages = tmp_path / "stages"
    stages.mkdir()
    src = stages / "00_source.onnx"
    src.write_bytes(dyn_file.read_bytes())
    rc, _, err = run_cli(
        capsys,
        "apply",
        src,
        tmp_path / "o.onnx",
        "-p",
        "eliminate-identity",
        "--stages",
        stages,
        "--shapes",
        DYN_SHAPES,
    )
    one_line_error(rc, err, "lies inside the output folder")
    assert src.read_bytes() == dyn_file.read_bytes() and not (tmp_path / "o.onnx").exists()
    rc, _, err = run_cli(
        capsys, "apply", dyn_file, dyn_file, "-p", "eliminate-identity", "--shapes", DYN_SHAPES
    )
    one_line_error(rc, err, "would overwrite the input")


def test_rerun_replaces_only_its_own_files_unless_forced(tmp_path, dyn_file, capsys):
    dest = tmp_path / "dyn-ort"
    assert _convert(tmp_path, dyn_file) == 0
    assert _convert(tmp_path, dyn_file) == 0  # only ocrgraft's files there: replaced
    (dest / "model.engine").write_bytes(b"built by the user")
    rc, _, err = run_cli(capsys, "convert", "--onnx", dyn_file, "--out", tmp_path, "--shapes", DYN_SHAPES)
    one_line_error(rc, err, "holds files ocrgraft did not write (model.engine)", "--force")
    assert (dest / "model.engine").read_bytes() == b"built by the user"
    assert _convert(tmp_path, dyn_file, "--force") == 0
    assert not (dest / "model.engine").exists() and (dest / "model.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn-ort", "dyn.onnx"]


def test_outputs_follow_the_umask(tmp_path, dyn_file):
    assert _convert(tmp_path, dyn_file) == 0
    dest = tmp_path / "dyn-ort"
    for path in (dest / "model.onnx", dest / "report.json", dest / "stages" / "00_source.onnx"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~modelio.UMASK, path
    for path in (dest, dest / "stages"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~modelio.UMASK, path


KILLED_CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from ocrgraft.core import modelio

    dest, point = Path(sys.argv[1]), sys.argv[2]
    with modelio.atomic_dir(dest) as tmp:
        (tmp / "model.onnx").write_text("new")
        if point == "writing":
            os.kill(os.getpid(), signal.SIGKILL)
        modelio.write_manifest(tmp)
        if point == "between-renames":     # the first of the two renames where no exchange exists
            os.replace(dest, dest.with_name(f".{dest.name}.{os.getpid()}.old"))
        elif point == "after-exchange":    # the folders swapped, the old one not yet removed
            assert modelio._exchange(tmp, dest)
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("point", ["writing", "between-renames", "after-exchange"])
def test_sigkill_during_the_swap_is_repaired_by_the_next_run(tmp_path, point):
    dest = tmp_path / "m-ort"
    with modelio.atomic_dir(dest) as tmp:
        (tmp / "model.onnx").write_text("old")
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, str(dest), point], cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers, "the killed run left nothing to repair: the test does not test"
    modelio.recover_interrupted(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m-ort"]
    expected = "new" if point == "after-exchange" else "old"  # the exchange itself is the commit point
    assert (dest / "model.onnx").read_text() == expected
    with modelio.atomic_dir(dest) as tmp:  # and the next run goes through
        (tmp / "model.onnx").write_text("next")
    assert (dest / "model.onnx").read_text() == "next"


def _wait_for(proc, needle, timeout=180):
    """Read the child's stderr until `needle` shows (None: return at once)."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle is not None and needle not in seen:
        line = proc.stderr.readline()
        assert line or proc.poll() is None, f"the run ended before '{needle}': {seen}"
        seen += line
        assert time.monotonic() < deadline
    return seen


@pytest.mark.parametrize("when", [None, "[0/", "[4/"])
def test_sigterm_leaves_what_ctrl_c_leaves(tmp_path, dyn_file, ppocr_rec, when):
    """SIGTERM at start-up, after the source check and mid-pipeline: one line, exit 143, the previous
    good output untouched, no temporary folder left."""
    assert _convert(tmp_path, dyn_file) == 0
    before = (tmp_path / "dyn-ort" / "report.json").read_bytes()
    exe = Path(sys.executable).with_name("ocrgraft")
    proc = subprocess.Popen(
        [
            str(exe),
            "convert",
            "--onnx",
            str(ppocr_rec),
            "--out",
            str(tmp_path),
            "--shapes",
            "x:1x3x48x32,1x3x48x320,8x3x48x1280",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    seen = _wait_for(proc, when)
    if when is None:
        time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    err = seen + proc.stderr.read()
    assert proc.wait(timeout=60) == 143, err
    assert (
        err.strip().splitlines()[-1] == "ocrgraft: terminated; nothing was written" and "Traceback" not in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn-ort", "dyn.onnx"]
    assert (tmp_path / "dyn-ort" / "report.json").read_bytes() == before


def test_ctrl_c_at_start_up_is_one_line(tmp_path):
    exe = Path(sys.executable).with_name("ocrgraft")
    proc = subprocess.Popen(
        [str(exe), "convert", "crnn", "--out", str(tmp_path / "out")],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    time.sleep(0.5)  # importing torch and the zoo
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert err.strip() == "ocrgraft: interrupted; nothing was written", err
    assert not (tmp_path / "out").exists()


# ---- 3. no false claims -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shapes,needle",
    [
        ("x:3x3x8x16,2x3x8x40,1x3x8x64", "input 'x' dim 0: min 3 is larger than opt 2"),
        ("x:1x3x8x16,2x3x8x80,3x3x8x64", "input 'x' dim 3: opt 80 is larger than max 64"),
        ("x:1x3x8x0", "dims must be positive"),
        ("x:1x3x8x-4", "dims must be positive"),
    ],
)
def test_impossible_shape_ranges_are_refused(tmp_path, dyn_file, capsys, shapes, needle):
    rc, _, err = run_cli(
        capsys,
        "convert",
        "--onnx",
        dyn_file,
        "--target",
        "trt",
        "--out",
        tmp_path / "out",
        "--shapes",
        shapes,
    )
    one_line_error(rc, err, needle)
    assert not (tmp_path / "out").exists()


def test_an_input_given_twice_is_refused(tmp_path, dyn_file, capsys):
    rc, _, err = run_cli(
        capsys,
        "convert",
        "--onnx",
        dyn_file,
        "--out",
        tmp_path / "out",
        "--shapes",
        "x:1x3x8x16",
        "--shapes",
        "x:2x3x8x40",
    )
    one_line_error(rc, err, "gives input 'x' twice")


def test_a_shape_the_torch_model_cannot_take_is_one_line(tmp_path, capsys):
    """3 channels for the grayscale CRNN: torch's own reason, the shapes given and the recipe's range."""
    rc, _, err = run_cli(
        capsys, "convert", "crnn", "--target", "ort", "--out", tmp_path / "out", "--shapes", "imgs:1x3x32x32"
    )
    last = one_line_error(
        rc, err, "fails in torch at imgs=", "to have 1 channels", "the recipe's: imgs:1x1x32x32"
    )
    assert "internal error" not in last
    assert not (tmp_path / "out").exists()


# ---- 5. the environment's failures ------------------------------------------------------------------


def test_out_that_is_a_file_or_below_one(tmp_path, dyn_file, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for out in (blocker, blocker / "below"):
        rc, _, err = run_cli(capsys, "convert", "--onnx", dyn_file, "--out", out, "--shapes", DYN_SHAPES)
        one_line_error(rc, err, f"{blocker} is a file, not a folder")
    assert blocker.read_text() == "x"


def test_apply_out_that_is_a_folder(tmp_path, dyn_file, capsys):
    rc, _, err = run_cli(
        capsys, "apply", dyn_file, tmp_path, "-p", "eliminate-identity", "--shapes", DYN_SHAPES
    )
    one_line_error(rc, err, "is a folder: give a file path")


def test_disk_full_and_read_only_say_what_to_do():
    with pytest.raises(OSError) as full:  # the kernel's own ENOSPC
        with open("/dev/full", "w") as f:
            f.write("x")
            f.flush()
    assert full.value.errno == errno.ENOSPC
    full.value.filename = "out/crnn-ort/model.onnx"
    assert describe_os_error(full.value).startswith("no space left on the device while writing out/crnn-ort")
    ro = OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/out")
    assert "read-only file system: choose another --out" in describe_os_error(ro)
    # a library's own OSError (Ray's ConnectionError) carries its message, not a file name
    ray = ConnectionError("Failed to connect to Ray cluster at head:6379\nmore")
    assert describe_os_error(ray) == "ConnectionError: Failed to connect to Ray cluster at head:6379"


def test_undecodable_text_in_a_model_is_named(tmp_path, capsys):
    proto = make_dynamic_model()
    proto.producer_name = "PRODUCERX"
    path = tmp_path / "bad.onnx"
    path.write_bytes(proto.SerializeToString().replace(b"PRODUCERX", b"P\xffRODUCER"))
    rc, _, err = run_cli(capsys, "convert", "--onnx", path, "--out", tmp_path / "out", "--shapes", DYN_SHAPES)
    one_line_error(rc, err, "producer_name is not valid UTF-8")


def test_debug_anywhere_and_a_closed_pipe(tmp_path, capsys):
    with pytest.raises(OcrgraftError):
        main(["inspect", str(tmp_path / "missing.onnx"), "--debug"])
    exe = Path(sys.executable).with_name("ocrgraft")
    proc = subprocess.run(f"'{exe}' passes | head -1", shell=True, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stderr == "" and len(proc.stdout.splitlines()) == 1


def _offset_gather_model(path: Path) -> None:
    """y = Gather(data[3, 4], idx + 2): random indices cannot know about the +2, so only given ones are
    valid."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Add", ["idx", "two"], ["j"]),
        helper.make_node("Gather", ["data", "j"], ["g"]),
        helper.make_node("Identity", ["g"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [3, 4]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.array(2, np.int64), "two")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_inputs_file_checks_what_random_inputs_cannot(tmp_path, capsys):
    model = tmp_path / "gather.onnx"
    _offset_gather_model(model)
    rc, _, err = run_cli(capsys, "apply", model, tmp_path / "o.onnx", "-p", "eliminate-identity")
    one_line_error(rc, err, "ONNX Runtime failed to run")
    np.savez(tmp_path / "in.npz", idx=np.array([-2, 0], np.int64))
    rc, out, err = run_cli(
        capsys,
        "apply",
        model,
        tmp_path / "o.onnx",
        "-p",
        "eliminate-identity",
        "--inputs",
        tmp_path / "in.npz",
    )
    assert rc == 0 and "1 stage(s) verified" in out, err
    (tmp_path / "objects.npz").write_bytes(b"PK\x03\x04 not a zip")
    rc, _, err = run_cli(
        capsys,
        "apply",
        model,
        tmp_path / "p.onnx",
        "-p",
        "eliminate-identity",
        "--inputs",
        tmp_path / "objects.npz",
    )
    one_line_error(rc, err, "not a readable file of plain arrays")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["convert", "--onnx", "m.onnx", "--atol", "-1"], "--atol: -1: give a finite number >= 0"),
        (["convert", "--onnx", "m.onnx", "--rtol", "nan"], "--rtol: nan: give a finite number >= 0"),
        (["apply", "a.onnx", "b.onnx", "-p", "eliminate-identity", "--atol", "inf"], "give a finite number"),
        (["compare", "a.onnx", "b.onnx", "--atol", "abc"], "'abc' is not a number"),
        (["eval", "out/x", "--images", "imgs", "--limit", "0"], "--limit: 0: give a whole number >= 1"),
        (["samples", "s", "--count", "-1"], "--count: -1: give a whole number >= 1"),
        (["samples", "s", "--pages", "-2"], "--pages: -2: give a whole number >= 0"),
        (["view", "m.onnx", "--port", "99999"], "a port is 0..65535"),
        (["matrix", "m.toml", "--workers", "0"], "--workers: 0: give a whole number >= 1"),
        (["matrix", "m.toml", "--threads", "0"], "--threads: 0: give a whole number >= 1"),
        (["convert", "lprnet", "--exporter", "bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_bad_option_values_are_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    """A negative tolerance fails every check and inf or nan passes any; a count of 0 or less, or a port
    out of range, means nothing: each is refused before any work, in one line (argparse's usage block is
    one --help away)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("ocrgraft: error: "), err
    assert needle in err and "--help" in err
    assert list(tmp_path.iterdir()) == []


def test_apply_replaces_a_model_but_not_another_file(tmp_path, capsys, dynamic_model_file):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    flags = ["-p", "eliminate-identity", "--no-verify"]
    rc, _, err = run_cli(capsys, "apply", dynamic_model_file, notes, *flags)
    one_line_error(rc, err, "exists and is not an ONNX model: refusing to replace it")
    assert notes.read_text() == "my notes\n"
    old = tmp_path / "old.onnx"
    old.write_bytes(dynamic_model_file.read_bytes())
    rc, _, err = run_cli(capsys, "apply", dynamic_model_file, old, *flags)
    assert rc == 0, err


def test_view_refuses_what_it_could_not_show(tmp_path, capsys):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    one_line_error(*run_cli(capsys, "view", empty, "--no-wait")[::2], "is empty")
    one_line_error(
        *run_cli(capsys, "view", tmp_path / "gone.onnx", "--no-wait")[::2], "no such file or folder"
    )


@pytest.mark.parametrize("flag", ["--onnx", "--out", "--weights"])
def test_an_empty_path_is_refused(tmp_path, capsys, monkeypatch, flag, dynamic_model_file):
    monkeypatch.chdir(tmp_path)
    source = [] if flag == "--onnx" else ["--onnx", dynamic_model_file]
    rc, _, err = run_cli(capsys, "convert", *source, flag, "", "--shapes", DYN_SHAPES)
    one_line_error(rc, err, f"{flag} is an empty path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.onnx"]


def test_target_files_and_dictionary_are_checked_before_any_work(tmp_path, capsys):
    """A keep-list that is not one, a calibration or image folder that is not there, or an empty
    dictionary is said at once, not after the export, the passes and a build have run."""
    text = tmp_path / "afile.txt"
    text.write_text("hello\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out, none = tmp_path / "out", tmp_path / "none"
    for flags, needle in (
        (["--target", "sophon", "--quantize", "INT8", "--keep", text], "not a precision.json"),
        (["--target", "sophon", "--quantize", "INT8", "--calib", none], "no such file or folder"),
        (["--target", "trt", "--quantize", "INT8", "--calib", none], "no such file or folder"),
        (["--dict", empty], "is empty"),
        (["--images", none], "not a folder of images"),
    ):
        rc, _, err = run_cli(capsys, "convert", "lprnet", *flags, "--out", out)
        one_line_error(rc, err, needle)
        assert "exporting" not in err and not out.exists(), err


def test_a_pass_list_of_nothing_is_refused(tmp_path, capsys, dynamic_model_file):
    for argv in (
        ["apply", dynamic_model_file, tmp_path / "y.onnx", "-p", ",,"],
        ["convert", "--onnx", dynamic_model_file, "--passes", "+", "--out", tmp_path / "out"],
    ):
        one_line_error(*run_cli(capsys, *argv)[::2], "names no pass")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dyn.onnx"]


def test_onnx_runtime_errors_lose_their_cpp_source_line(tmp_path, capsys):
    """A Reshape that fails at run time: ONNX Runtime's own words, without reshape_helper.h:NNN and a C++
    signature; a custom op is named as one."""
    value = helper.make_tensor_value_info
    x, y = value("x", onnx.TensorProto.FLOAT, ["n", 3]), value("y", onnx.TensorProto.FLOAT, ["d0", "d1"])
    target = numpy_helper.from_array(np.array([4, 5], np.int64), "target")
    graphs = {
        "plain": helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
        "reshape": helper.make_graph(
            [helper.make_node("Reshape", ["x", "target"], ["y"])], "g", [x], [y], [target]
        ),
        "custom": helper.make_graph(
            [helper.make_node("FooBar", ["x"], ["y"], domain="my.ops")], "g", [x], [y]
        ),
    }
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("my.ops", 1)]
    for name, graph in graphs.items():
        onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=8), tmp_path / f"{name}.onnx")
    rc, _, err = run_cli(
        capsys, "compare", tmp_path / "plain.onnx", tmp_path / "reshape.onnx", "--shapes", "x:2x3"
    )
    last = one_line_error(rc, err, "cannot be reshaped to the requested shape")
    assert ".h:" not in last and "::" not in last, last
    rc, _, err = run_cli(
        capsys, "compare", tmp_path / "plain.onnx", tmp_path / "custom.onnx", "--shapes", "x:2x3"
    )
    one_line_error(rc, err, "it has no operator my.ops:FooBar (a custom op)", "apply --no-verify")


def test_an_empty_weights_file_and_a_text_inputs_file_say_what_they_are(tmp_path, capsys, dynamic_model_file):
    empty = tmp_path / "w.pth"
    empty.write_bytes(b"")
    one_line_error(
        *run_cli(capsys, "convert", "lprnet", "--weights", empty)[::2], f"weights {empty} is empty"
    )
    text = tmp_path / "inputs.npz"
    text.write_text("x = 1\n")
    rc, _, err = run_cli(
        capsys, "apply", dynamic_model_file, tmp_path / "y.onnx", "-p", "fold-constants", "--inputs", text
    )
    one_line_error(rc, err, "not an .npz or .npy file")


def test_a_file_name_that_is_not_utf8_converts(tmp_path, capsys):
    """The name comes from the file name: its undecodable bytes reach the pictures, report.md and
    recipe.json as escapes instead of failing the conversion at its last step."""
    src = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff\xfename.onnx"))
    onnx.save(make_dynamic_model(), src)
    rc, _, err = run_cli(capsys, "convert", "--onnx", src, "--shapes", DYN_SHAPES, "--out", tmp_path / "out")
    assert rc == 0, err
    (folder,) = (tmp_path / "out").iterdir()
    assert "bad\\udcff\\udcfename" in (folder / "report.md").read_text(encoding="utf-8")
