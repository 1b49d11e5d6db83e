"""One benchmark step per process, so each tool's peak memory is its own and a crash or a hang stays
contained.

    python bench/tools.py run TOOL SRC DST            -> {"seconds", "cpu_seconds"}
                                                         (load + transform + save; no imports)
    python bench/tools.py reference SRC NPZ           -> ORT outputs of SRC at the two benchmark shapes
    python bench/tools.py check SRC DST NPZ           -> {"nodes", "equal", "dynamic", "detail"}
    python bench/tools.py convert MODEL TARGET OUT    -> convert()'s per-stage cost
    python bench/tools.py latency SHAPES A [B ...]    -> ORT CPU median ms per model, runs interleaved

Each prints one JSON line last; the driver (run.py) reads it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graphs import SHAPES, feeds  # noqa: E402


def _imports(tool: str):
    """Import everything a tool needs before the clock starts; returns its transform (path in, path out)."""
    if tool == "floor":
        return lambda src, dst: onnx.save(onnx.load(src), dst)
    if tool == "ocrgraft":
        import onnxscript.optimizer  # noqa: F401  (fold-constants imports it on first use)

        import ocrgraft
        from ocrgraft.passes import GENERIC_PASSES

        def run(src, dst):
            model = ocrgraft.load(src)
            ocrgraft.Pipeline(list(GENERIC_PASSES), verify=False).run(model)
            ocrgraft.save(model, dst)

        return run
    if tool == "onnxsim":
        import onnxsim

        def run(src, dst):
            model, _ = onnxsim.simplify(onnx.load(src))
            onnx.save(model, dst)

        return run
    if tool == "onnxslim":
        import onnxslim

        return lambda src, dst: onnx.save(onnxslim.slim(onnx.load(src)), dst)
    if tool == "graphsurgeon":
        import onnx_graphsurgeon as gs

        def run(src, dst):
            graph = gs.import_onnx(onnx.load(src))
            graph.fold_constants().cleanup().toposort()
            onnx.save(gs.export_onnx(graph), dst)

        return run
    raise SystemExit(f"unknown tool {tool}")


def cmd_run(tool: str, src: str, dst: str) -> dict:
    transform = _imports(tool)
    start, cpu = time.perf_counter(), time.process_time()
    transform(src, dst)
    return {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def _session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # check the graph as written
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def cmd_reference(src: str, npz: str) -> dict:
    session = _session(src)
    arrays = {
        f"{case}/{o.name}": value
        for case in SHAPES
        for o, value in zip(session.get_outputs(), session.run(None, feeds(case)))
    }
    np.savez(npz, **arrays)
    return {"cases": list(SHAPES)}


def _dynamic_dims(model: onnx.ModelProto) -> dict[str, set[int]]:
    out = {}
    for v in [*model.graph.input, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        out[v.name] = {i for i, d in enumerate(dims) if not d.HasField("dim_value")}
    return out


def cmd_check(src: str, dst: str, npz: str) -> dict:
    """Same outputs at both shapes (atol 1e-5, rtol 1e-4), and every dim dynamic in SRC still dynamic
    in DST."""
    before, after = onnx.load(src, load_external_data=False), onnx.load(dst, load_external_data=False)
    lost = [
        f"{name}[{i}]"
        for name, dims in _dynamic_dims(before).items()
        for i in sorted(dims - _dynamic_dims(after).get(name, set()))
    ]
    result = {
        "nodes": len(after.graph.node),
        "dynamic": not lost,
        "detail": f"fixed: {', '.join(lost)}" if lost else "",
    }
    if npz == "-":
        note = "outputs not compared: ONNX Runtime would take many minutes to load the graph"
        result["detail"] = "; ".join(filter(None, (result["detail"], note)))
        result["equal"] = None
        return result
    expected = np.load(npz)
    try:
        session = _session(dst)
        for case in SHAPES:
            for o, got in zip(session.get_outputs(), session.run(None, feeds(case))):
                ref = expected[f"{case}/{o.name}"]
                if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-4, atol=1e-5):
                    raise ValueError(
                        f"{o.name} differs at {'x'.join(map(str, SHAPES[case]))}: "
                        f"max abs err {np.abs(got - ref).max() if got.shape == ref.shape else 'shape'}"
                    )
        result["equal"] = True
    except Exception as exc:  # noqa: BLE001  (a tool's broken output is a result, not a crash)
        result["equal"] = False
        result["detail"] = (result["detail"] + "; " if result["detail"] else "") + " ".join(str(exc).split())[
            :200
        ]
    return result


def cmd_convert(model: str, target: str, out: str, shapes: str = "") -> dict:
    """convert() with every stage verified (at `shapes`, default the recipe's); wall time per step, read
    from its report and progress lines."""
    from ocrgraft.converter.convert import convert

    marks: list[tuple[float, str]] = []
    start = time.perf_counter()
    conversion = convert(
        model,
        target=target,
        out=out,
        shapes=shapes or None,
        progress=lambda msg: marks.append((time.perf_counter(), msg)),
    )
    total = time.perf_counter() - start
    report = conversion.report
    stages = report["stages"]
    first_stage = next(t for t, msg in marks if msg.startswith("[0/"))
    building = [
        i
        for i, (_, msg) in enumerate(marks)
        if msg.startswith(f"target {target}:") and msg.endswith("building")
    ]
    build = (
        marks[building[0] + 1][0] - marks[building[0]][0]
        if building and building[0] + 1 < len(marks)
        else 0.0
    )
    source = stages[0]
    cost = {
        "export": first_stage - start - source.get("save_seconds", 0.0),  # the [0/n] line follows the save
        "passes": {s["name"]: s["seconds"] for s in stages[1:]},
        "checks": {s["name"]: s["verify_seconds"] for s in stages if s["verify_seconds"]},
        "cases": len(report["test_inputs"]),
        "verify": sum(s["verify_seconds"] for s in stages),
        "save": sum(s.get("save_seconds", 0.0) for s in stages),
        "build": build,
        "total": total,
    }
    return {
        "cost": cost,
        "out": str(conversion.out_dir),
        "verified": report["all_verified"],
        "build": report["build"]["summary"],
        "nodes": [stages[0]["nodes"], stages[-1]["nodes"]],
    }


MATRIX_BENCH = """
[[model]]
zoo = "lprnet"

[target.sophon]
chip = ["bm1684x", "bm1684"]
quantize = ["F32", "INT8"]
batch = [1, 4]

[[exclude]]
chip = "bm1684"
quantize = "INT8"
"""  # the README's example: the LPRNet write-up's BModels but bm1684 INT8 (random weights fail it there)

# Cells that keep one core busy and no more (the BModel cells' chip simulator runs engine threads of its
# own): CRNN for the three targets that verify on ONNX Runtime, at four batch sizes, every stage checked
# up to width 800 (5-25 s a cell here: long enough that a fresh worker's first-conversion warm-up of ~4 s
# is not most of it).
MATRIX_CPU_BENCH = """
[[model]]
zoo = "crnn"
shapes = "imgs:1x1x32x32,4x1x32x320,8x1x32x800"

[target.ort]
batch = [1, 2, 4, 8]

[target.trt]
batch = [1, 2, 4, 8]

[target.ascend]
batch = [1, 2, 4, 8]
"""
MATRICES = {"bmodel": MATRIX_BENCH, "cpu": MATRIX_CPU_BENCH}


def cmd_matrix(work: str, kind: str = "bmodel") -> dict:
    """The same matrix (MATRICES[kind]: 6 LPRNet BModels for bm1684x F32/INT8 and bm1684 F32 at batch
    1/4, or 12 CRNN cells for ort/trt/ascend at four batch sizes) four ways: one cell after another in
    this process as a user would (threads as the libraries choose), one after another held to one thread
    each (what every Ray cell gets), two of those cells at once without Ray (what this machine gives two
    such conversions side by side: the ceiling for any scheduler), and on a local Ray with a worker per
    core. Ray's own costs are read off the cells' start and end times on each worker."""
    import multiprocessing
    import os
    import shutil

    import torch

    from ocrgraft.converter.matrix import (
        cell_key,
        longest_first,
        read_matrix,
        run_cell,
        run_matrix,
        thread_env,
    )
    from ocrgraft.targets import tpu_mlir_env

    if kind == "bmodel":
        tpu_mlir_env.ensure(progress=lambda m: None)
    root = Path(work)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "m.toml").write_text(MATRICES[kind])
    cells, _ = read_matrix(root / "m.toml")
    workers = os.cpu_count() or 1
    starters = longest_first(cells)[:workers]  # the cells Ray starts with
    pair = [(asdict(c), str(root / "pair"), cell_key(c)) for c in starters]

    def one_after_another(folder: str) -> tuple[float, list[dict]]:
        start = time.perf_counter()
        rows = [run_cell(asdict(c), str(root / folder), cell_key(c)) for c in cells]
        return time.perf_counter() - start, rows

    seq_wall, sequential = one_after_another("seq")
    os.environ.update(thread_env(1))  # read by ocrgraft's ONNX Runtime sessions and TPU-MLIR's tools
    torch.set_num_threads(1)
    one_wall, one_core = one_after_another("seq-one-core")
    with multiprocessing.get_context("spawn").Pool(workers) as pool:  # those first cells at once
        side_by_side = pool.starmap(run_cell, pair)
    started = {(c.name, c.target) for c in starters}
    alone = sum(r["seconds"] for r in one_core if (r["cell"], r["target"]) in started)
    together = max(r["seconds"] for r in side_by_side)  # each timed in its process: imports not counted
    start = time.perf_counter()
    report = run_matrix(root / "m.toml", root / "ray")
    ray_wall = time.perf_counter() - start
    rows = report["cells"]
    busy = sum(c["seconds"] for c in rows)
    failed = [c for c in sequential + one_core + side_by_side + rows if c["status"] != "done"]
    by_worker: dict[str, list[dict]] = {}
    for c in sorted(rows, key=lambda c: c["started_at"]):
        by_worker.setdefault(c["worker"], []).append(c)
    end = max(c["ended_at"] for c in rows)
    # Ray's own costs: starting it, a worker's start and imports before its first cell, the gaps between
    # one cell's end and the next one's start on the same worker. A worker idle at the end because
    # no cell was left is the matrix's imbalance, not scheduling.
    first = sum(cs[0]["started_at"] - report["ray_ready_at"] for cs in by_worker.values())
    gaps = sum(b["started_at"] - a["ended_at"] for cs in by_worker.values() for a, b in zip(cs, cs[1:]))
    tail = sum(end - cs[-1]["ended_at"] for cs in by_worker.values())
    return {
        "kind": kind,
        "cells": len(cells),
        "workers": workers,
        "sequential_s": seq_wall,
        "one_core_s": one_wall,
        "ray_s": ray_wall,
        "speedup": seq_wall / ray_wall,
        "speedup_one_core": one_wall / ray_wall,
        "ceiling": alone / together,  # throughput of `workers` cells side by side over one at a time
        "ray_start_s": report["ray_start_s"],
        "worker_start_s": first,
        "gaps_s": gaps,
        "tail_s": tail,
        "overhead_per_cell_s": (report["ray_start_s"] + first + gaps) / len(cells),
        "cell_s_one_core": sum(c["seconds"] for c in one_core),
        "cell_s_ray": busy,
        "failed": [f"{c['cell']}: {c['reason']}" for c in failed],
    }


def cmd_latency(shapes: str, *paths: str, rounds: int = 100) -> dict:
    """ORT CPU latency (default optimizations, one thread) on the same random input, the models interleaved
    round by round in rotating order, so a noisy neighbour slows them all alike. Returns the median ms of
    each and every round's times, for paired ratios (run.py)."""
    import onnxruntime as ort

    sessions = {}
    for path in paths:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        sessions[path] = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    first = next(iter(sessions.values()))
    dims = dict(item.split(":") for item in shapes.split(";"))
    inputs = {
        i.name: rng.uniform(-1, 1, [int(d) for d in dims[i.name].split("x")]).astype(np.float32)
        for i in first.get_inputs()
    }
    times: dict[str, list[float]] = {p: [] for p in paths}
    for session in sessions.values():  # warm up
        for _ in range(3):
            session.run(None, inputs)
    order = list(sessions.items())
    for r in range(rounds):  # each model takes each place in the round equally often
        for path, session in order[r % len(order) :] + order[: r % len(order)]:
            t = time.perf_counter()
            session.run(None, inputs)
            times[path].append((time.perf_counter() - t) * 1e3)
    return {"ms": {p: float(np.median(t)) for p, t in times.items()}, "rounds": times}


def peak_mib(pid: int | str = "self") -> float | None:
    """Peak resident memory of a process's own image (VmHWM). Not ru_maxrss: that also counts the parent's
    pages the child shared between fork and exec."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: list[str]) -> None:
    commands = {
        "run": cmd_run,
        "reference": cmd_reference,
        "check": cmd_check,
        "convert": cmd_convert,
        "latency": cmd_latency,
        "matrix": cmd_matrix,
    }
    result = commands[argv[0]](*argv[1:])
    print(json.dumps({**result, "peak_mib": peak_mib()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
