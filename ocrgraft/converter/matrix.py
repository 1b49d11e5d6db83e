"""`ocrgraft matrix FILE.toml`: many conversions (models x targets x chips x precisions x batch sizes)
as tasks on Ray, each an ordinary conversion in its own folder with its own report; a cell whose inputs
have not changed since it last finished is not run again, a failed cell does not stop the others, and
one report (matrix.md, matrix.json, matrix.png) covers them all.

The matrix file:

    out = "out/matrix"          # the cells' folders, relative to this file (default: --out, else out/matrix)
    images = "lines/"           # optional: every cell's accuracy table on these images

    [[model]]
    zoo = "lprnet"              # or onnx = "rec.onnx" / paddle = "inference_dir", with name = "..."
    # shapes, weights, exporter, recipe, passes, dict: as the convert options of the same names;
    # images: this model's own (a recognizer's lines, a detector's pages), over the matrix's

    [target.ort]
    [target.sophon]             # a list crosses that axis; a single value is the same for every cell
    chip = ["bm1684x", "bm1684"]
    quantize = ["F32", "INT8"]
    batch = [1, 4]              # sophon: one BModel per cell; other targets: the batch dim fixed to it

    [[exclude]]                 # cells to leave out: every key given must match
    model = "lprnet"
    quantize = "INT8"
    chip = "bm1684"
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import socket
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.modelio import atomic_file
from ocrgraft.core.progress import say, steps

MODEL_KEYS = set("zoo onnx paddle name shapes weights exporter recipe passes dict images".split())
MODEL_FILES = ("onnx", "paddle", "weights", "recipe", "dict", "images")  # paths relative to the matrix file
MATRIX_KEYS = {
    "model": "a list of [[model]] tables",
    "target": "[target.<name>] tables",
    "exclude": "a list of [[exclude]] tables",
    "out": "a folder (a string)",
    "images": "a folder (a string)",
}
CELL_FILE = "matrix_cell.json"  # in a finished cell's folder: the key of the inputs it was made from
SOPHON_MEMORY = 4 << 30  # TPU-MLIR's steps hold a few GB each: Ray places no more per node than fit
CANCEL_WAIT_S = 30  # Ctrl-C: how long running cells get to stop their tools and remove their folders


def thread_env(threads: int) -> dict[str, str]:
    """What holds ocrgraft's ONNX Runtime sessions, torch and TPU-MLIR's tools to `threads` threads."""
    return {name: str(threads) for name in ("OCRGRAFT_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


@dataclass
class Cell:
    """One conversion of the matrix: its model (as the matrix file gives it), target and options."""

    model: dict
    target: str
    options: dict = field(default_factory=dict)  # the axes' values: chip, quantize, batch, soc, version
    images: str | None = None

    @property
    def label(self) -> str:
        return (
            self.model.get("name")
            or self.model.get("zoo")
            or Path(self.model.get("onnx") or self.model["paddle"]).stem
        )

    @property
    def name(self) -> str:
        """The convert --name: the model and each axis value, so every cell has its own folder."""
        return "-".join([self.label, *(str(v) if k != "batch" else f"b{v}" for k, v in self.options.items())])

    def folder(self, out: Path) -> Path:
        return out / f"{self.name}-{self.target}"


def read_matrix(path: str | Path) -> tuple[list[Cell], dict]:
    """The cells a matrix file asks for (excludes applied) and its settings (out, images)."""
    from ocrgraft.targets import TARGETS, target_class

    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OcrgraftError(f"matrix file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OcrgraftError(f"{path}: not a readable TOML matrix file ({exc})") from None
    unknown = sorted(set(spec) - {"out", "images", "model", "target", "exclude"})
    if unknown:
        raise OcrgraftError(
            f"{path}: unknown key(s) {', '.join(unknown)} (known: out, images, model, target, exclude)"
        )
    models, targets, excludes = spec.get("model", []), spec.get("target", {}), spec.get("exclude", [])
    if not models or not targets:
        raise OcrgraftError(f"{path}: give at least one [[model]] and one [target.<name>]")
    for key, value, ok in (
        ("model", models, isinstance(models, list) and all(isinstance(m, dict) for m in models)),
        ("target", targets, isinstance(targets, dict) and all(isinstance(t, dict) for t in targets.values())),
        ("exclude", excludes, isinstance(excludes, list) and all(isinstance(x, dict) for x in excludes)),
        ("out", spec.get("out"), isinstance(spec.get("out", ""), str)),
        ("images", spec.get("images"), isinstance(spec.get("images", ""), str)),
    ):
        if not ok:
            raise OcrgraftError(f"{path}: {key} must be {MATRIX_KEYS[key]}, got {value!r}")
    base = path.parent
    for m in models:
        sources = [k for k in ("zoo", "onnx", "paddle") if k in m]
        bad = sorted(set(m) - MODEL_KEYS)
        if len(sources) != 1 or bad:
            raise OcrgraftError(
                f"{path}: each [[model]] names one of zoo / onnx / paddle"
                + (f"; unknown key(s) {', '.join(bad)}" if bad else "")
            )
        _check_model(m, path)
    images = spec.get("images")
    if images and not Path(images).is_absolute():
        images = str(base / images)
    if images and not Path(images).exists():
        raise OcrgraftError(f"{path}: images: {images} not found")
    cells = []
    for target, axes in targets.items():
        if target not in TARGETS:
            raise OcrgraftError(f"{path}: unknown target '{target}' (known: {', '.join(TARGETS)})")
        axes = {k: v if isinstance(v, list) else [v] for k, v in (axes or {}).items()}
        takes = {o.name for o in target_class(target).options}
        for key in axes:
            if key not in takes and key != "batch":
                raise OcrgraftError(
                    f"{path}: [target.{target}] {key}: target {target} takes "
                    f"{', '.join(sorted(takes | {'batch'})) or 'batch only'}"
                )
        for batch in axes.get("batch", []):  # one batch size per cell
            if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
                raise OcrgraftError(
                    f"{path}: [target.{target}] batch must be a positive whole number or a list of them, "
                    f"got {batch!r}"
                )
        for m in models:
            for values in itertools.product(*axes.values()):
                options = dict(zip(axes, values))
                target_class(target).check_options({k: v for k, v in options.items() if k in takes})
                cells.append(Cell(m, target, options, m.get("images", images)))  # the model's own first
    known = {"model", "target", *(k for axes in targets.values() for k in axes)}
    for x in excludes:
        if set(x) - known:
            raise OcrgraftError(
                f"{path}: [[exclude]] unknown key(s) {', '.join(sorted(set(x) - known))} "
                f"(known: {', '.join(sorted(known))})"
            )
    cells = [c for c in cells if not any(_matches(c, x) for x in excludes)]
    names = [c.folder(Path(".")) for c in cells]
    if len(set(names)) != len(names):
        raise OcrgraftError(f"{path}: two cells would share a folder; give the models distinct names")
    out = spec.get("out")
    if out and not Path(out).is_absolute():
        out = str(base / out)
    return cells, {"out": out, "images": images}


def _check_model(m: dict, path: Path) -> None:
    """A [[model]]'s files exist, its zoo name, recipe and shapes read: said now, before any folder is
    made or any cell runs, rather than as the same failure in every cell."""
    from ocrgraft.converter.recipes import get_recipe
    from ocrgraft.core.recipe import read_recipe_file
    from ocrgraft.core.shapes import ShapeSet

    for k, v in m.items():
        listed = k in ("shapes", "passes") and isinstance(v, list) and all(isinstance(s, str) for s in v)
        if not isinstance(v, str) and not listed:
            raise OcrgraftError(f"{path}: [[model]] {k} must be a string, got {v!r}")
    for k in MODEL_FILES:
        if k in m and not m[k].startswith(("package:", "metadata:")):  # a dictionary may be either
            m[k] = str(path.parent / m[k])  # an absolute path stays as it is
            if not Path(m[k]).exists():
                raise OcrgraftError(f"{path}: [[model]] {k}: {m[k]} not found")
    try:
        if "zoo" in m:
            get_recipe(m["zoo"])
        if "recipe" in m:
            read_recipe_file(m["recipe"])
        if "shapes" in m:
            ShapeSet.parse(m["shapes"])
    except OcrgraftError as exc:
        raise OcrgraftError(f"{path}: [[model]] {exc}") from None


def _matches(cell: Cell, exclude: dict) -> bool:
    values = {"model": cell.label, "target": cell.target, **{k: v for k, v in cell.options.items()}}
    return all(str(values.get(k)) == str(v) for k, v in exclude.items())


def cell_key(cell: Cell) -> str:
    """What a cell's result depends on: its source's bytes, its options, and the versions of ocrgraft and
    of the tools that made it. Equal keys and a finished folder: the cell is not run again."""
    import onnx
    import onnxruntime

    from ocrgraft.core import __version__

    digest = hashlib.sha256()
    for k in ("onnx", "weights", "recipe", "dict"):
        if cell.model.get(k):
            digest.update(_file_hash(Path(cell.model[k])).encode())
    if cell.model.get("paddle"):
        for f in sorted(Path(cell.model["paddle"]).rglob("*")):
            if f.is_file():
                digest.update(f.name.encode() + _file_hash(f).encode())
    if cell.model.get("zoo"):
        from ocrgraft.converter.recipes import get_recipe

        recipe = get_recipe(cell.model["zoo"])
        digest.update(json.dumps(recipe.options, sort_keys=True, default=str).encode())
    if cell.images:
        for f in sorted(Path(cell.images).rglob("*")):
            if f.is_file():
                digest.update(f.name.encode() + _file_hash(f).encode())
    versions = {"ocrgraft": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    if cell.target == "sophon":
        from ocrgraft.targets import tpu_mlir_env

        versions["tpu_mlir"] = tpu_mlir_env.TPU_MLIR_VERSION
    digest.update(json.dumps([asdict(cell), versions], sort_keys=True).encode())
    return digest.hexdigest()


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def finished(cell: Cell, out: Path, key: str) -> bool:
    folder = cell.folder(out)
    try:
        kept = json.loads((folder / CELL_FILE).read_text())
    except (OSError, ValueError):
        return False
    return kept.get("key") == key and (folder / "report.json").is_file()


def run_cell(cell_data: dict, out: str, key: str) -> dict:
    """One cell, in a Ray worker (or in this process): an ordinary conversion; a failure is a row."""
    from ocrgraft.converter.convert import convert

    cell = Cell(**cell_data)
    m, start = cell.model, time.perf_counter()
    takes = _target_options(cell.target)
    options = {k: str(v) for k, v in cell.options.items() if k in takes}
    shapes = m.get("shapes")
    if "batch" in cell.options and "batch" not in takes:
        shapes = _fixed_batch(m, int(cell.options["batch"]))
    row = {"cell": cell.name, "target": cell.target, "model": cell.label, **cell.options}
    # where and when it ran, for the bench's account of Ray's costs (wall-clock: comparable across workers)
    row |= {"worker": f"{socket.gethostname()}:{os.getpid()}", "started_at": time.time()}
    row["threads"] = int(os.environ.get("OCRGRAFT_THREADS") or 0) or None  # None: the libraries' own choice

    def finish(**result) -> dict:
        return {**row, **result, "seconds": time.perf_counter() - start, "ended_at": time.time()}

    try:
        conv = convert(
            m.get("zoo"),
            onnx=m.get("onnx"),
            paddle=m.get("paddle"),
            target=cell.target,
            out=out,
            name=cell.name,
            shapes=shapes,
            weights=m.get("weights"),
            exporter=m.get("exporter"),
            recipe_file=m.get("recipe"),
            passes=m.get("passes"),
            dictionary=m.get("dict"),
            target_options=options,
            images=cell.images,
            progress=lambda msg: None,
            force=True,
        )
    except OcrgraftError as exc:
        return finish(status="failed", reason=str(exc))
    except Exception as exc:  # noqa: BLE001  (a crash in one cell is that cell's result)
        return finish(
            status="failed", reason=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        )
    done = finish(**summarize(conv.out_dir))
    with atomic_file(conv.out_dir / CELL_FILE) as tmp:
        tmp.write_text(
            json.dumps({"key": key, "cell": asdict(cell), "seconds": done["seconds"]}, indent=1) + "\n"
        )
    return done


def _target_options(target: str) -> set[str]:
    from ocrgraft.targets import target_class

    return {o.name for o in target_class(target).options}


def _fixed_batch(model: dict, batch: int) -> str:
    """The model's shape range with every input's batch dim fixed: one cell per batch size."""
    from ocrgraft.converter.recipes import get_recipe
    from ocrgraft.core.shapes import ShapeSet

    if model.get("shapes"):
        shapes = ShapeSet.parse(model["shapes"])
    elif model.get("zoo"):
        shapes = get_recipe(model["zoo"]).shapes
    else:
        raise OcrgraftError(f"model '{model.get('name')}': a batch axis needs its shapes (shapes = ...)")
    parts = []
    for name, cases in shapes.shapes.items():
        fixed = [(batch, *s[1:]) for s in cases]
        parts.append(f"{name}:" + ",".join("x".join(map(str, s)) for s in fixed))
    return ";".join(parts)


def summarize(folder: Path) -> dict:
    """A finished cell's row: verified, accuracy, artifact size, build time, latency."""
    from ocrgraft.converter.accuracy import accuracy_summary

    report = json.loads((folder / "report.json").read_text())
    build = report["build"]
    sizes = [folder / a for a in build.get("artifacts", [])]
    details = build.get("details", {})
    return {
        "status": "done",
        "verified": report["all_verified"],
        "built": build["built"],
        "build": build["summary"],
        "precision": (build.get("precision") or {}).get("device"),
        "accuracy": accuracy_summary(report["accuracy"]) if report.get("accuracy") else None,
        "artifact_bytes": sum(p.stat().st_size for p in sizes if p.is_file()),
        "latency_ms": details.get("latency_ms"),  # measured (ort)
        "estimated_latency_ms": details.get("estimated_latency_ms"),  # the compiler's estimate (sophon)
        "folder": str(folder),
    }


def run_matrix(
    path: str | Path,
    out: str | Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
) -> dict:
    """Every cell not already finished, as Ray tasks of `threads` cores each; returns the matrix report
    (also written)."""
    for flag, n in (("--workers", workers), ("--threads", threads)):
        if n is not None and n < 1:
            raise OcrgraftError(f"{flag} {n}: give a whole number >= 1")
    cells, settings = read_matrix(path)
    if address:
        check_address(address)
    out = Path(out or settings["out"] or "out/matrix")
    keys = {c.folder(out).name: cell_key(c) for c in cells}  # the folder name is the cell's identity
    rows, todo = {}, []
    for c in cells:
        if finished(c, out, keys[c.folder(out).name]):
            kept = json.loads((c.folder(out) / CELL_FILE).read_text())
            rows[c.folder(out).name] = {
                "cell": c.name,
                "target": c.target,
                "model": c.label,
                **c.options,
                **summarize(c.folder(out)),
                "seconds": kept.get("seconds"),
                "cached": True,
            }
        else:
            todo.append(c)
    say(
        f"matrix: {len(cells)} cells, {len(cells) - len(todo)} unchanged since they finished, "
        f"{len(todo)} to run"
    )
    started, ray_start, ray_ready_at = time.perf_counter(), 0.0, None
    if todo:
        with _ray(address, workers, threads) as (ray, ray_start):
            ray_ready_at = time.time()
            out.mkdir(parents=True, exist_ok=True)  # only now: a matrix refused leaves no folder behind
            for cell, row in _run_cells(ray, longest_first(todo), out, keys, threads):
                rows[cell.folder(out).name] = row
    report = {
        "matrix": str(path),
        "out": str(out),
        "cells": [rows[c.folder(out).name] for c in cells if c.folder(out).name in rows],
        "seconds": time.perf_counter() - started,
        "ray_start_s": ray_start,
        "ray_ready_at": ray_ready_at,
        "threads_per_cell": threads,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_matrix_report(report, out)
    return report


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse, in one line, a cluster address where nothing answers: Ray itself retries such an address
    for minutes, printing a warning every few seconds. Addresses Ray resolves itself (`auto`) pass."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        if address != "auto":
            raise OcrgraftError(f"--address {address}: give host:port, ray://host:port or auto")
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        reason = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        raise OcrgraftError(
            f"--address {address}: no Ray cluster answers there ({reason or 'timed out'})"
        ) from None


@contextlib.contextmanager
def _ray(address: str | None, workers: int | None, threads: int = 1):
    """Ray and how long it took to start: a local one running `workers` cells of `threads` cores at once
    (default: as many as the cores hold), or the cluster at `address`; what this started is stopped after
    (a Ray the caller runs is left alone). A cell no node has the cores for is refused, not left waiting."""
    try:
        import ray
    except ImportError:
        raise OcrgraftError(
            "ocrgraft matrix runs on Ray, which is not installed: pip install 'ocrgraft[matrix]'"
        ) from None
    start, started_here = time.perf_counter(), not ray.is_initialized()
    if started_here:
        kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address:
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:  # something answers there, but not a Ray cluster
                raise OcrgraftError(f"--address {address}: {exc}") from None
        else:
            cores = os.cpu_count() or 1
            ray.init(num_cpus=(workers or max(1, cores // threads)) * threads, **kwargs)
    try:
        largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if threads > largest:
            raise OcrgraftError(
                f"--threads {threads}: no Ray node has that many cores (the largest has {largest:g})"
            )
        yield ray, time.perf_counter() - start
    finally:
        if started_here:
            ray.shutdown()


def longest_first(cells: list[Cell]) -> list[Cell]:
    """The order cells start in, by a rough cost, so that the cells left running alone at the end are short
    ones: BModel builds before scripts, INT8 (calibration) before float, larger batches first."""

    def cost(cell: Cell) -> tuple:
        quantize = str(cell.options.get("quantize", "")).upper()
        return cell.target == "sophon", quantize == "INT8", int(cell.options.get("batch", 1))

    return sorted(cells, key=cost, reverse=True)


def _run_cell_in_task(cell_data: dict, out: str, key: str, threads: int) -> dict:
    """run_cell in a Ray worker, its libraries and tools held to the cores the task asked for. Set here
    rather than as the task's runtime_env: a runtime_env gets workers of its own, started when the first
    cell asks (about 0.6 s each), while these are the workers Ray started with itself."""
    os.environ.update(thread_env(threads))
    if "torch" in sys.modules:  # torch reads OMP_NUM_THREADS once: an earlier cell on this worker imported it
        sys.modules["torch"].set_num_threads(threads)
    return run_cell(cell_data, out, key)


def _run_cells(ray, todo: list[Cell], out: Path, keys: dict, threads: int = 1):
    """Yield each cell and its row as it finishes. Each cell is one task needing `threads` cores (and, for
    sophon, SOPHON_MEMORY of memory), so Ray runs as many at once as the machine holds."""
    task = ray.remote(_run_cell_in_task)
    pending = {}
    for c in todo:
        resources = {"num_cpus": threads, **({"memory": SOPHON_MEMORY} if c.target == "sophon" else {})}
        ref = task.options(**resources).remote(asdict(c), str(out), keys[c.folder(out).name], threads)
        pending[ref] = c
    try:
        with steps("matrix", len(todo), "cell", announce=True) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(done[0])
                row = ray.get(done[0])
                status = "ok" if row["status"] == "done" else f"FAILED: {row['reason']}"
                say(f"  {cell.folder(out).name}: {status} ({row['seconds']:.0f} s)")
                bar.advance(note=cell.name)
                yield cell, row
    except KeyboardInterrupt:
        # a KeyboardInterrupt in each running cell: its tools are killed and its unfinished folder goes
        for ref in pending:
            ray.cancel(ref)
        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
        raise OcrgraftError(
            f"matrix stopped: {len(pending)} cell(s) not finished; run it again to continue "
            "(finished cells are kept)"
        ) from None


def write_matrix_report(report: dict, out: Path) -> None:
    with atomic_file(out / "matrix.json") as tmp:
        tmp.write_text(json.dumps(report, indent=1, default=str) + "\n")
    cells = report["cells"]
    done = [c for c in cells if c["status"] == "done"]
    lines = [
        f"# Conversion matrix: {report['matrix']}",
        "",
        f"{len(cells)} cells: {len(done)} done ({sum(bool(c.get('cached')) for c in cells)} unchanged "
        f"since an earlier run), {len(cells) - len(done)} failed; {report['seconds']:.0f} s; "
        f"{report.get('threads_per_cell', 1)} thread(s) per cell.",
        "",
        "| cell | target | status | every stage verified | device precision | accuracy / agreement | "
        "artifacts | time (s) | latency (ms) |",
        "|---|---|---|---|---|---|---:|---:|---:|",
    ]
    for c in cells:
        if c["status"] != "done":
            lines.append(
                f"| {c['cell']} | {c['target']} | **failed**: {c['reason']} | | | | | {c['seconds']:.0f} | |"
            )
            continue
        folder = Path(c["folder"]).name
        size = f"{c['artifact_bytes'] / 1e6:.1f} MB" if c["artifact_bytes"] else "–"
        latency = f"{c['latency_ms']:.2f}" if c.get("latency_ms") else "–"
        if not c.get("latency_ms") and c.get("estimated_latency_ms"):
            latency = f"{c['estimated_latency_ms']:.2f} (estimated)"
        lines.append(
            f"| [{c['cell']}]({folder}/report.md) | {c['target']} | {'built' if c['built'] else 'scripts'}"
            f"{' (cached)' if c.get('cached') else ''} | {'yes' if c['verified'] else '**no**'} | "
            f"{c.get('precision') or '–'} | {c.get('accuracy') or '–'} | {size} | "
            f"{(c.get('seconds') or 0):.0f} | {latency} |"
        )
    lines += [
        "",
        "Latency: ONNX Runtime's median on this machine's CPU (ort); for a BModel, one run on the chip as "
        "TPU-MLIR's cycle count estimates it at compile time (no chip here to time it on).",
    ]
    picture = _picture(cells, out)
    if picture:
        lines += ["", f"![{picture}]({picture})"]
    with atomic_file(out / "matrix.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _picture(cells: list[dict], out: Path) -> str | None:
    """Time per cell, coloured by status (matplotlib, ocrgraft[report])."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(cells) + 1.2))
    colours = [
        "#c0392b" if c["status"] != "done" else "#95a5a6" if c.get("cached") else "#2e86c1" for c in cells
    ]
    ax.barh(
        [f"{c['cell']}-{c['target']}" for c in cells], [c.get("seconds") or 0 for c in cells], color=colours
    )
    ax.invert_yaxis()
    ax.set_xlabel("seconds (blue: run now, grey: unchanged since an earlier run, red: failed)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "matrix.png", dpi=110)
    plt.close(fig)
    return "matrix.png"
