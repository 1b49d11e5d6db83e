"""`ocrgraft matrix`: conversion matrices on a local Ray, one ordinary conversion per cell, cached by
their inputs, a failed cell reported without stopping the others."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from ocrgraft.converter.cli import main
from ocrgraft.converter.matrix import read_matrix, run_matrix
from ocrgraft.core.errors import OcrgraftError
from ocrgraft.models.train_lprnet import write_set
from ocrgraft.targets import tpu_mlir_env
from ocrgraft.targets.sophon_simulator import RAY_SHARE

from conftest import DYN_SHAPES, cli_error, make_dynamic_model

MATRIX = f"""
out = "out"

[[model]]
zoo = "lprnet"
images = "plates"

[[model]]
onnx = "dyn.onnx"
shapes = "{DYN_SHAPES}"

[target.ort]
batch = [1, 4]

[target.sophon]
quantize = "F32"
batch = [1, 4]

[target.trt]

[target.ascend]

[[exclude]]
model = "dyn"
target = "sophon"

[[exclude]]
model = "dyn"
target = "ort"

[[exclude]]
model = "lprnet"
target = "trt"

[[exclude]]
model = "lprnet"
target = "ascend"
"""


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_small_matrix_runs_on_ray_and_a_second_run_skips_every_cell(tmp_path, capsys):
    tpu_mlir_env.ensure(progress=lambda m: None)  # set up once here, not inside a Ray task
    onnx.save(make_dynamic_model(), tmp_path / "dyn.onnx")
    write_set(tmp_path / "plates", 12, random.Random(3))
    (tmp_path / "m.toml").write_text(MATRIX)
    rc, out, err = run(capsys, "matrix", tmp_path / "m.toml", "--json")
    assert rc == 0, err
    report = json.loads(out)
    cells = {f"{c['cell']}-{c['target']}": c for c in report["cells"]}
    assert sorted(cells) == [
        "dyn-ascend",
        "dyn-trt",
        "lprnet-F32-b1-sophon",
        "lprnet-F32-b4-sophon",
        "lprnet-b1-ort",
        "lprnet-b4-ort",
    ]
    assert all(c["status"] == "done" and c["verified"] for c in cells.values()), cells
    assert cells["lprnet-F32-b4-sophon"]["built"] and cells["lprnet-F32-b4-sophon"]["artifact_bytes"] > 0
    bmodels = json.loads((tmp_path / "out" / "lprnet-F32-b4-sophon" / "sophon" / "bmodels.json").read_text())
    assert [b["batch"] for b in bmodels] == [4]  # the cell's batch, not the recipe's list
    # the BModel's accuracy run on the 12 plates went out as Ray tasks: shares of at most RAY_SHARE,
    # spread over the local Ray's cores (2 tasks of 6 on 2 cores)
    share = min(RAY_SHARE, -(-12 // (os.cpu_count() or 1)))
    accuracy = json.loads((tmp_path / "out" / "lprnet-F32-b1-sophon" / "report.json").read_text())["accuracy"]
    assert accuracy["items"] == 12 and list(accuracy["ran"].values()) == [f"{-(-12 // share)} Ray task(s)"]
    assert cells["lprnet-F32-b1-sophon"]["accuracy"] and cells["dyn-trt"]["accuracy"] is None
    assert cells["lprnet-b1-ort"]["latency_ms"] > 0  # measured on this CPU
    assert cells["lprnet-F32-b4-sophon"]["estimated_latency_ms"] > 0  # TPU-MLIR's estimate for the chip
    ort4 = json.loads((tmp_path / "out" / "lprnet-b4-ort" / "report.json").read_text())
    assert {tuple(s)[0] for s in ort4["shapes"]["x"]} == {4}  # batch fixed for a target without BModels
    md = (tmp_path / "out" / "matrix.md").read_text()
    assert "6 cells: 6 done" in md and "[lprnet-b1](lprnet-b1-ort/report.md)" in md
    assert re.search(r"lprnet-F32-b4-sophon/report.md\).* \| [\d.]+ \(estimated\) \|", md)
    assert (tmp_path / "out" / "matrix.png").read_bytes()[:4] == b"\x89PNG"

    reports = {f: f.stat().st_mtime_ns for f in (tmp_path / "out").glob("*/report.json")}
    rc, out, err = run(capsys, "matrix", tmp_path / "m.toml")
    assert rc == 0 and "6 unchanged since they finished, 0 to run" in err
    assert len(reports) == 6 and reports == {f: f.stat().st_mtime_ns for f in reports}  # nothing rewritten
    assert "(6 unchanged since an earlier run)" in (tmp_path / "out" / "matrix.md").read_text()


def test_a_failing_cell_does_not_stop_the_others_and_a_changed_input_reruns(tmp_path, capsys):
    onnx.save(make_dynamic_model(), tmp_path / "good.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07 not an onnx file")
    (tmp_path / "m.toml").write_text(
        f'[[model]]\nonnx = "good.onnx"\nshapes = "{DYN_SHAPES}"\n\n'
        f'[[model]]\nonnx = "bad.onnx"\nshapes = "{DYN_SHAPES}"\n\n[target.ort]\n'
    )
    rc, out, err = run(capsys, "matrix", tmp_path / "m.toml", "--out", tmp_path / "out")
    assert rc == 1 and err.strip().splitlines()[-1].startswith(
        "ocrgraft: error: 1 of 2 cells failed, first bad"
    )
    report = json.loads((tmp_path / "out" / "matrix.json").read_text())
    status = {c["cell"]: c["status"] for c in report["cells"]}
    assert status == {"good": "done", "bad": "failed"}
    assert "**failed**" in (tmp_path / "out" / "matrix.md").read_text()
    onnx.save(make_dynamic_model(), tmp_path / "bad.onnx")  # mended: only that cell runs again
    rc, out, err = run(capsys, "matrix", tmp_path / "m.toml", "--out", tmp_path / "out")
    assert rc == 0 and "1 unchanged since they finished, 1 to run" in err


def _processes_under(folder) -> list[str]:
    """Command lines of the processes whose working directory is inside `folder`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd").startswith(str(folder)):
                found.append((proc / "cmdline").read_text().replace("\0", " "))
        except OSError:
            pass
    return found


def test_ctrl_c_stops_the_running_cells_cleanly_and_a_rerun_continues(tmp_path):
    """Ctrl-C (SIGINT to the command's process group, as a terminal sends it) while a BModel cell is in
    TPU-MLIR's tools: a one-line message, no traceback, the finished cell kept, the unfinished one
    leaving no folder and no process behind; the next run does only that cell."""
    tpu_mlir_env.ensure(progress=lambda m: None)
    onnx.save(make_dynamic_model(), tmp_path / "dyn.onnx")
    (tmp_path / "m.toml").write_text(
        f'out = "out"\n[[model]]\nonnx = "dyn.onnx"\nshapes = "{DYN_SHAPES}"\n[[model]]\nzoo = "lprnet"\n'
        '[target.ort]\n[target.sophon]\nquantize = "F32"\nbatch = 1\n'
        '[[exclude]]\nmodel = "dyn"\ntarget = "sophon"\n[[exclude]]\nmodel = "lprnet"\ntarget = "ort"\n'
    )
    command = [sys.executable, "-m", "ocrgraft", "matrix", "m.toml"]
    env = {**os.environ, "OCRGRAFT_PROGRESS": "lines"}
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "dyn-ort: ok" in line:
            break
    time.sleep(4)  # the sophon cell is inside model_transform / model_deploy by now
    os.killpg(proc.pid, signal.SIGINT)
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=120) == 1, err
    assert err.strip().splitlines()[-1] == (
        "ocrgraft: error: matrix stopped: 1 cell(s) not finished; run it again to continue "
        "(finished cells are kept)"
    ), err
    assert "Traceback" not in err
    out = tmp_path / "out"
    assert (out / "dyn-ort" / "matrix_cell.json").is_file()
    assert not (out / "lprnet-F32-b1-sophon").exists()
    for _ in range(20):  # Ray's own processes may take a moment to go after the command has exited
        left = _processes_under(tmp_path)
        if not left:
            break
        time.sleep(0.5)
    assert left == []
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "1 unchanged since they finished, 1 to run" in done.stderr
    assert (out / "lprnet-F32-b1-sophon" / "matrix_cell.json").is_file()


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[model]]\nzoo = "crnn"\n', "give at least one [[model]] and one [target.<name>]"),
        ('[[model]]\nzoo = "crnn"\n[target.tpu]\n', "unknown target 'tpu'"),
        ('[[model]]\nzoo = "crnn"\n[target.trt]\nchip = "bm1684x"\n', "[target.trt] chip: target trt takes"),
        ('[[model]]\nzoo = "crnn"\nonnx = "x.onnx"\n[target.ort]\n', "names one of zoo / onnx / paddle"),
        ('[[model]]\nzoo = "crnn"\n[target.sophon]\nquantize = "INT4"\n', "--quantize INT4"),
        ("[[model]\n", "not a readable TOML matrix file"),
    ],
)
def test_bad_matrix_files_are_one_clear_error(tmp_path, text, message):
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(OcrgraftError, match=message.replace("[", r"\[").replace("]", r"\]")):
        read_matrix(tmp_path / "m.toml")


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[model]]\nzoo = "nosuch"\n[target.ort]\n', "[[model]] unknown model 'nosuch' (known: crnn,"),
        ('[[model]]\nonnx = "missing.onnx"\n[target.ort]\n', "[[model]] onnx: {dir}/missing.onnx not found"),
        (
            '[[model]]\nzoo = "crnn"\nrecipe = "r.toml"\n[target.ort]\n',
            "[[model]] recipe {dir}/r.toml: not valid TOML",
        ),
        ('[[model]]\nzoo = "crnn"\nshapes = 5\n[target.ort]\n', "[[model]] shapes must be a string, got 5"),
        (
            '[[model]]\nzoo = "crnn"\n[target.ort]\nbatch = ["a"]\n',
            "[target.ort] batch must be a positive whole number",
        ),
        (
            '[[model]]\nzoo = "crnn"\n[target.sophon]\nbatch = 0\n',
            "[target.sophon] batch must be a positive whole number",
        ),
        (
            '[[model]]\nzoo = "crnn"\n[target]\nort = 5\n',
            "target must be [target.<name>] tables, got {{'ort': 5}}",
        ),
        (
            '[[model]]\nzoo = "crnn"\n[target.ort]\nbatch = 1\n[[exclude]]\nfoo = "bar"\n',
            "[[exclude]] unknown key(s) foo (known: batch, model, target)",
        ),
    ],
)
def test_a_bad_matrix_is_refused_before_its_out_folder_is_made(tmp_path, capsys, text, message):
    """Through the CLI: one line naming the file and what is wrong, exit 1, and no empty --out left."""
    (tmp_path / "r.toml").write_text("[verify\n")
    (tmp_path / "m.toml").write_text(text)
    rc, out, err = run(capsys, "matrix", tmp_path / "m.toml", "--out", tmp_path / "out")
    assert rc == 1 and err.count("\n") == 1, err
    assert err.startswith(f"ocrgraft: error: {tmp_path / 'm.toml'}: {message.format(dir=tmp_path)}"), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, n", [("workers", 0), ("workers", -1), ("threads", 0)])
def test_workers_and_threads_below_one_are_refused_before_ray_starts(tmp_path, flag, n):
    (tmp_path / "m.toml").write_text('[[model]]\nzoo = "crnn"\n[target.ort]\n')
    with pytest.raises(OcrgraftError, match=f"^--{flag} {n}: give a whole number >= 1$"):
        run_matrix(tmp_path / "m.toml", tmp_path / "out", **{flag: n})
    assert not (tmp_path / "out").exists()


def test_cells_get_the_threads_asked_for_and_more_than_a_node_has_is_refused(tmp_path, capsys):
    """--threads N: each cell asks Ray for N cores and its libraries use N threads; a cell no node can
    hold would wait forever, so it is refused in one line (here: a Ray the caller started on 1 core)."""
    import ray

    onnx.save(make_dynamic_model(), tmp_path / "dyn.onnx")
    (tmp_path / "m.toml").write_text(f'[[model]]\nonnx = "dyn.onnx"\nshapes = "{DYN_SHAPES}"\n[target.ort]\n')
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        rc, out, err = run(capsys, "matrix", tmp_path / "m.toml", "--out", tmp_path / "out", "--threads", "2")
        assert ray.is_initialized()  # the caller's Ray is left alone
    finally:
        ray.shutdown()
    assert rc == 1 and "Traceback" not in err
    assert (
        err.splitlines()[-1]
        == "ocrgraft: error: --threads 2: no Ray node has that many cores (the largest has 1)"
    )
    assert not (tmp_path / "out").exists()

    rc, out, err = run(capsys, "matrix", tmp_path / "m.toml", "--out", tmp_path / "out", "--threads", "2")
    report = json.loads((tmp_path / "out" / "matrix.json").read_text())
    assert rc == 0 and report["threads_per_cell"] == 2
    assert [(c["status"], c["threads"]) for c in report["cells"]] == [("done", 2)]
    assert "2 thread(s) per cell" in (tmp_path / "out" / "matrix.md").read_text()


@pytest.mark.parametrize(
    "address, message",
    [
        ("127.0.0.1:1", "no Ray cluster answers there (Connection refused)"),
        ("ray://127.0.0.1:1", "no Ray cluster answers there (Connection refused)"),
        ("head-node", "give host:port, ray://host:port or auto"),
    ],
)
def test_an_address_where_no_cluster_answers_is_refused_at_once(tmp_path, capsys, address, message):
    """Ray retries such an address for minutes; ocrgraft says so in one line, before any folder is made."""
    (tmp_path / "m.toml").write_text('[[model]]\nzoo = "crnn"\n[target.ort]\n')
    err = cli_error(capsys, "matrix", tmp_path / "m.toml", "--out", tmp_path / "out", "--address", address)
    assert err == f"ocrgraft: error: --address {address}: {message}\n"
    assert not (tmp_path / "out").exists()


def test_cells_start_longest_first(tmp_path):
    """BModel builds before scripts, INT8 before float, larger batches first: the cells left running
    alone at the end of a matrix are the short ones."""
    from ocrgraft.converter.matrix import longest_first

    (tmp_path / "m.toml").write_text(
        '[[model]]\nzoo = "lprnet"\n[target.ort]\nbatch = [1, 4]\n'
        '[target.sophon]\nquantize = ["F32", "INT8"]\nbatch = [1, 4]\n'
    )
    cells, _ = read_matrix(tmp_path / "m.toml")
    order = [c.folder(tmp_path).name for c in longest_first(cells)]
    assert order == [
        "lprnet-INT8-b4-sophon",
        "lprnet-INT8-b1-sophon",
        "lprnet-F32-b4-sophon",
        "lprnet-F32-b1-sophon",
        "lprnet-b4-ort",
        "lprnet-b1-ort",
    ]


def test_a_failed_simulator_share_on_ray_is_one_clear_error(tmp_path):
    """Inside Ray a BModel's inputs go out as tasks; a share that fails comes back as the simulator's own
    one-line error, not as Ray's wrapped traceback."""
    import numpy as np
    import ray

    from ocrgraft.targets.sophon_simulator import simulate

    tc = tpu_mlir_env.ensure(progress=lambda m: None)
    (tmp_path / "broken.bmodel").write_bytes(b"not a bmodel")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with pytest.raises(OcrgraftError) as err:
            simulate(tc, tmp_path, "broken.bmodel", "bm1684x", [{"x": np.ones((1, 3), np.float32)}])
    finally:
        ray.shutdown()
    assert str(err.value).startswith("the bm1684x simulator on 1 input(s) failed (exit")
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)
