"""The `ocrgraft` command: one verb per job, one clear line on stderr for every error."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path

from ocrgraft.core import __version__, progress

EPILOG = """shapes: NAME:MIN[,OPT,MAX] with dims joined by x, repeat per input, e.g.
  --shapes x:1x3x48x32,1x3x48x320,8x3x48x1280
passes: comma-separated names, arguments in parentheses, e.g.
  -p eliminate-identity,fold-constants,fix-dims(x.0=1)"""


class _Parser(argparse.ArgumentParser):
    """argparse's own errors (a bad flag or value) as the one line every other error is."""

    def error(self, message: str):
        self.exit(2, f"ocrgraft: error: {message} (see: {self.prog} --help)\n")


def _tolerance_value(text: str) -> float:
    """--atol / --rtol: a finite number >= 0 (a negative one fails every check, inf or nan passes any)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text}: give a finite number >= 0")
    return value


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: give a whole number >= {minimum}")
        return value

    return parse


def _port(text: str) -> int:
    value = _at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text}: a port is 0..65535")
    return value


def _check_pass_list(text: str | None) -> None:
    """--passes ',,' (or '+'): a pipeline of nothing would pass every check without looking."""
    if text is not None and not text.lstrip("+").replace(",", "").strip():
        raise _err(f"--passes '{text}' names no pass (see: ocrgraft passes)")


def _tolerance(args):
    from ocrgraft.core.compare import FP32, Tolerance

    return Tolerance(
        atol=args.atol if args.atol is not None else FP32.atol,
        rtol=args.rtol if args.rtol is not None else FP32.rtol,
    )


def cmd_convert(args) -> int:
    from ocrgraft.converter.convert import convert
    from ocrgraft.converter.recipes import list_recipes

    if args.list:
        for r in list_recipes():
            print(f"{r.name:16s} {r.description}")
        return 0
    _check_pass_list(args.passes)
    t = time.perf_counter()
    options = {
        k: v
        for k, v in (
            ("build", args.build),
            ("version", args.target_version),
            ("soc", args.soc),
            ("gears", args.gears),
            ("chip", args.chip),
            ("batch", args.batch),
            ("quantize", args.quantize),
            ("calib", args.calib),
            ("min_agreement", args.min_agreement),
            ("keep", args.keep),
        )
        if v is not None and v is not False
    }
    conv = convert(
        args.model,
        onnx=args.onnx,
        paddle=args.paddle,
        target=args.target,
        out=args.out,
        passes=args.passes,
        shapes=args.shapes,
        tolerance=_tolerance(args),
        target_options=options,
        weights=args.weights,
        exporter=args.exporter,
        progress=progress.say,
        force=args.force,
        trust_code=args.trust_code,
        inputs=_user_inputs(args.inputs),
        explain=args.explain,
        recipe_file=args.recipe,
        images=args.images,
        labels=args.labels,
        limit=args.limit,
        dictionary=args.dict,
        dict_space=args.dict_space,
        noise_floor=args.atol is None and args.rtol is None,
        name=args.name,
    )
    r = conv.report
    seconds = time.perf_counter() - t
    if args.json:
        summary = {
            "model": r["model"],
            "target": r["target"],
            "out_dir": str(conv.out_dir),
            "all_verified": r["all_verified"],
            "built": r["build"]["built"],
            "build": r["build"]["summary"],
            "artifacts": r["build"]["artifacts"],
            "stages": len(r["stages"]) - 1,
            "noise_floor": r["tolerance"]["noise_floor"],
            "accuracy": r["accuracy"]["rows"] if r.get("accuracy") else None,
            "seconds": round(seconds, 1),
        }
        print(json.dumps(summary, indent=1))
        return 0
    verified = "every stage verified" if r["all_verified"] else "NOT every stage verified (see report.md)"
    print(f"{r['model']} -> {r['target']}: {verified}; {r['build']['summary']}")
    print(f"wrote {conv.out_dir}/ (model.onnx, stages/, report.json, report.md) in {seconds:.1f}s")
    return 0


def cmd_eval(args) -> int:
    from ocrgraft.converter.accuracy import evaluate_folder

    table, summary = evaluate_folder(args.out_dir, args.images, args.labels, args.limit, progress.say)
    if args.json:
        keys = ("kind", "images", "items", "reference", "rows", "skipped")
        return _print_json({"out_dir": args.out_dir, **{k: table.get(k) for k in keys}})
    print(summary)
    return 0


def _print_json(summary: dict) -> int:
    """--json: the summary alone on stdout (progress stays on stderr)."""
    print(json.dumps(summary, indent=1, default=str))
    return 0


def cmd_matrix(args) -> int:
    from ocrgraft.converter.matrix import run_matrix

    report = run_matrix(args.file, args.out, args.address, args.workers, args.threads)
    cells = report["cells"]
    failed = [c for c in cells if c["status"] != "done"]
    if args.json:
        _print_json(report)
    else:
        print(
            f"matrix: {len(cells) - len(failed)} of {len(cells)} cells done; wrote {report['out']}/matrix.md"
        )
    if failed:
        raise _err(
            f"{len(failed)} of {len(cells)} cells failed, first {failed[0]['cell']}: {failed[0]['reason']}"
        )
    return 0


def cmd_samples(args) -> int:
    from ocrgraft.core.samples import write_samples

    folder = write_samples(args.folder, args.count, args.pages, args.seed)
    pages = f" and {args.pages} pages in {folder / 'pages'}" if args.pages else ""
    print(f"wrote {args.count} labelled text lines to {folder} (labels.txt){pages}")
    return 0


def cmd_apply(args) -> int:
    from ocrgraft.converter.pipeline import FLOOR_MULTIPLE, Pipeline
    from ocrgraft.core.errors import OcrgraftError
    from ocrgraft.core.modelio import external_data_files, load, load_proto, refuse_overwrite, save

    _check_pass_list(args.passes)
    src, dst = Path(args.input), Path(args.output)
    if dst.is_dir():
        raise _err(f"OUT {dst} is a folder: give a file path, e.g. {dst / src.name}")
    inputs = [src, *external_data_files(src), args.inputs]
    refuse_overwrite(inputs, outputs=[dst], folders=[args.stages] if args.stages else [])
    model = load(src)
    if dst.exists():  # replacing a model is what OUT is for; replacing anything else loses a user's file
        try:
            load_proto(dst)
        except OcrgraftError:
            raise _err(
                f"OUT {dst} exists and is not an ONNX model: refusing to replace it (remove it or give "
                "another path)"
            ) from None
    pipeline = Pipeline(
        args.passes,
        tolerance=_tolerance(args),
        stages_dir=args.stages,
        progress=progress.say,
        inputs=_user_inputs(args.inputs),
        explain=args.explain,
        floor_multiple=FLOOR_MULTIPLE if args.atol is None and args.rtol is None else None,
        verify=not args.no_verify,
    )
    try:
        result = pipeline.run(model, args.shapes)
    except OcrgraftError as exc:
        if "open: give its range with --shapes" in str(exc):
            raise _err(f"{exc} (or --no-verify to rewrite without checking)") from None
        raise
    save(result.model, dst)
    checked = [s for s in result.stages[1:] if s.verified == "yes"]
    if args.json:
        stages = [
            {k: getattr(s, k) for k in ("name", "rewrites", "nodes", "verified", "max_abs", "max_abs_prev")}
            for s in result.stages
        ]
        return _print_json(
            {
                "output": str(dst),
                "verified": not args.no_verify,
                "rewrites": result.rewrites,
                "cases": len(result.cases),
                "tolerance": str(result.tolerance),
                "stages": stages,
            }
        )
    what = f"{len(checked)} stage(s) verified on {len(result.cases)} inputs"
    if args.no_verify:
        what = "NOT verified (--no-verify): no stage was run or compared with the input model"
    print(
        f"wrote {dst}: {result.rewrites} rewrites, "
        f"{result.stages[0].nodes} -> {result.stages[-1].nodes} nodes, {what}"
    )
    return 0


def _user_inputs(path: str | None) -> dict | None:
    """--inputs FILE.npz: arrays by input name (read without pickles: no objects, no code)."""
    if not path:
        return None
    from ocrgraft.core.safeload import plain_arrays

    arrays = plain_arrays(path, "--inputs")
    if "" in arrays:
        raise _err(f"--inputs {path}: give an .npz with one array per input name (np.savez(path, x=...))")
    return arrays


def cmd_passes(args) -> int:
    """Each pass with its doc and the targets whose default pipeline runs it (as each target declares)."""
    from ocrgraft.passes import GENERIC_PASSES, list_passes
    from ocrgraft.targets import TARGETS, target_class

    chosen = set(GENERIC_PASSES) | set(target_class(args.target).passes) if args.target else None
    listed = []
    for cls in list_passes():
        if chosen is not None and cls.name not in chosen:
            continue
        users = [name for name, t in TARGETS.items() if cls.name in t.passes]
        run = "every target (generic)" if cls.name in GENERIC_PASSES else ", ".join(users) or "opt-in"
        listed.append(
            {
                "name": cls.name,
                "kind": cls.semantics,
                "run_by": run,
                "arguments": cls.parameters(),
                "usage": cls.describe_parameters(),
                "doc": cls.doc(),
            }
        )
    if args.json:
        return _print_json({"passes": listed})
    for entry in listed:
        takes = f"; arguments: {entry['usage']}" if entry["usage"] else ""
        print(f"{entry['name']:26s} [{entry['kind']}; run by {entry['run_by']}{takes}]\n    {entry['doc']}")
    return 0


def cmd_inspect(args) -> int:
    from ocrgraft.core.modelio import load
    from ocrgraft.core.shapes import describe_shape

    model = load(args.file)
    nodes = list(model.graph.all_nodes()) if hasattr(model.graph, "all_nodes") else list(model.graph)
    ops = Counter(n.op_type for n in nodes).most_common()
    if args.json:

        def values(vs):
            dims = [[d if isinstance(d, int) else str(d) for d in (v.shape or [])] for v in vs]
            return [
                {"name": v.name, "dtype": v.dtype.name if v.dtype else None, "shape": d}
                for v, d in zip(vs, dims)
            ]

        return _print_json(
            {
                "file": args.file,
                "ir_version": model.ir_version,
                "opsets": {d or "ai.onnx": v for d, v in model.opset_imports.items()},
                "inputs": values(model.graph.inputs),
                "outputs": values(model.graph.outputs),
                "nodes": len(nodes),
                "initializers": len(model.graph.initializers),
                "ops": dict(ops),
            }
        )
    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in model.opset_imports.items())
    print(
        f"{args.file}: ir_version {model.ir_version}, opset {opsets}, producer {model.producer_name or '?'} "
        f"{model.producer_version or ''}".rstrip()
    )
    for kind, values in (("input", model.graph.inputs), ("output", model.graph.outputs)):
        for v in values:
            dyn = [i for i, d in enumerate(v.shape or []) if not isinstance(d, int)]
            print(
                f"  {kind:6s} {v.name}: {v.dtype.name if v.dtype else '?'} {describe_shape(v.shape)}"
                + (f"  dynamic dims {dyn}" if dyn else "")
            )
    print(f"  nodes: {len(nodes)}, initializers: {len(model.graph.initializers)}")
    for op, n in ops:
        print(f"    {op:24s} {n}")
    return 0


def cmd_compare(args) -> int:
    from ocrgraft.core.compare import compare_outputs
    from ocrgraft.core.modelio import load
    from ocrgraft.core.runner import Runner, fit_ir_version
    from ocrgraft.core.shapes import ShapeSet, random_inputs

    a, b = load(args.a), load(args.b)
    for path, model in ((args.a, a), (args.b, b)):
        lowered = fit_ir_version(model)
        if lowered:
            print(f"note: {path}: {lowered}", file=sys.stderr)
    tol = _tolerance(args)
    shapes = ShapeSet.parse(args.shapes).resolve(list(a.graph.inputs))
    ra, rb = Runner(a, what=args.a), Runner(b, what=args.b)
    failures, rows = 0, []
    if not args.json:
        print(f"{'shapes':32s} {'output':28s} {'max abs':>10s} {'max rel':>10s}  ok")
    for i, (label, case) in enumerate(shapes.cases()):
        feeds = random_inputs(list(a.graph.inputs), case, seed=i)
        for d in compare_outputs(rb.run(feeds), ra.run(feeds), tol):
            failures += not d.ok
            where = f"{label} " + ",".join("x".join(map(str, s)) for s in case.values())
            rows.append(
                {"case": where, "output": d.name, "max_abs": d.max_abs, "max_rel": d.max_rel, "ok": d.ok}
            )
            if not args.json:
                print(
                    f"{where:32s} {d.name:28s} {d.max_abs:10.3g} {d.max_rel:10.3g}  "
                    f"{'yes' if d.ok else 'NO: ' + d.describe()}"
                )
    if args.json:
        _print_json({"ok": not failures, "tolerance": str(tol), "comparisons": rows})
    if failures:
        raise _err(f"{failures} output comparison(s) exceed the tolerance ({tol})")
    if not args.json:
        print(f"all outputs match within {tol}")
    return 0


def cmd_view(args) -> int:
    from ocrgraft.converter.view import serve
    from ocrgraft.core.modelio import load_proto

    path = Path(args.path)
    if path.is_dir():
        files = sorted((path / "stages").glob("*.onnx")) + (
            [path / "model.onnx"] if (path / "model.onnx").exists() else []
        )
        if not files:
            raise _err(f"{path} holds no stages/*.onnx or model.onnx: is it a conversion's output folder?")
    elif path.exists():
        load_proto(path)  # an empty or damaged file is said here, not shown as a blank page
        files = [path]
    else:
        raise _err(f"no such file or folder: {path}")
    server, address = serve(files, f"ocrgraft: {path.resolve().name}", args.host, args.port)
    print(f"{len(files)} file(s) in Netron: {address}", flush=True)
    for f in files:
        print(f"  {f.name:36s} {address}m/{urllib.parse.quote(f.name)}/", flush=True)
    if args.browse:
        import webbrowser

        webbrowser.open(address)
    if args.no_wait:
        server.shutdown()
        return 0
    print("serving; press Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


def _err(msg: str) -> Exception:
    from ocrgraft.core.errors import OcrgraftError

    return OcrgraftError(msg)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ocrgraft",
        description="Convert OCR models to ONNX and vendor targets, "
        "with every graph rewrite saved and verified.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug", action="store_true", help="show the full traceback on errors (anywhere on the line)"
    )
    p.add_argument("--version", action="version", version=f"ocrgraft {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines, only results and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="also the passes' and targets' log lines")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def json_flag(sp):
        sp.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")

    def tolerance_flags(sp):
        sp.add_argument(
            "--atol",
            type=_tolerance_value,
            help="absolute tolerance, used exactly (default 1e-5, raised to 4x the model's noise floor: "
            "how far ONNX Runtime's own optimizations move its outputs)",
        )
        sp.add_argument(
            "--rtol", type=_tolerance_value, help="relative tolerance, used exactly (default 1e-4)"
        )

    def explain_flag(sp):
        sp.add_argument(
            "--explain",
            nargs="?",
            const=True,
            default=False,
            metavar="PASS[,PASS]",
            help="for each pass (or the passes named), list where a pattern began to match but was not "
            "rewritten, and the condition that failed",
        )

    def images_flags(sp, required=False):
        sp.add_argument(
            "--images",
            metavar="DIR",
            required=required,
            help="real images (jpg/png/bmp), preprocessed by the recipe: every stage is also checked on "
            "them and the report gets an accuracy table",
        )
        sp.add_argument(
            "--labels",
            default="auto",
            metavar="FILE|names|none",
            help="labels: a PaddleOCR label file (image<TAB>text), 'names' (from file names), 'none' "
            "(default: labels.txt / rec_gt.txt / gt.txt in DIR if there is one)",
        )
        sp.add_argument("--limit", type=_at_least(1), metavar="N", help="use the first N images only")

    def inputs_flag(sp):
        sp.add_argument(
            "--inputs",
            metavar="FILE.npz",
            help="test inputs by input name, used beside the random "
            "ones (for inputs whose valid values random data cannot hit: indices, shapes)",
        )

    def shape_flag(sp):
        sp.add_argument(
            "--shapes",
            action="append",
            metavar="NAME:MIN[,OPT,MAX]",
            help="input shape range to verify at; repeat per input",
        )

    c = sub.add_parser(
        "convert",
        help="convert a zoo model or an ONNX file for a target",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("model", nargs="?", help="zoo model name (see --list)")
    c.add_argument("--onnx", metavar="FILE", help="convert an existing .onnx file instead of a zoo model")
    c.add_argument(
        "--paddle",
        metavar="DIR",
        help="convert a Paddle inference model folder (inference.json or "
        ".pdmodel, with .pdiparams), e.g. an exported PaddleOCR model",
    )
    c.add_argument("--target", "-t", default="ort", help="ort (default), trt, ascend, sophon")
    c.add_argument(
        "--name", help="name of the result: OUT/<name>-<target>/ (default: the zoo name or the file's stem)"
    )
    json_flag(c)
    c.add_argument("--out", "-o", default="out", help="output root; results go to OUT/<model>-<target>/")
    c.add_argument(
        "--passes",
        "-p",
        help="comma-separated passes, replacing the default pipeline; '+a,b' runs the default pipeline "
        "and these (e.g. +resize-nearest-to-bilinear)",
    )
    c.add_argument("--list", action="store_true", help="list the zoo models and exit")
    c.add_argument(
        "--weights",
        metavar="FILE",
        help="PyTorch weights: state_dict, checkpoint dict, DataParallel "
        "checkpoint or TorchScript .pt (default: fixed-seed random init)",
    )
    c.add_argument(
        "--exporter",
        choices=("torchscript", "dynamo"),
        help="torch.onnx exporter: TorchScript (dynamo=False) or torch.export-based (default: the recipe's)",
    )
    c.add_argument(
        "--target-version",
        help="toolchain version whose op table applies (trt: 10.1 or 8.6; ascend: 8.0 or 5.0.4)",
    )
    c.add_argument(
        "--build",
        action="store_const",
        const="1",
        help="trt: build the engine where TensorRT and a GPU exist",
    )
    c.add_argument(
        "--soc", help="ascend: atc --soc_version, e.g. Ascend310P3 (default), Ascend310, Ascend910B1"
    )
    c.add_argument(
        "--gears",
        action="store_const",
        const="1",
        help="ascend: dynamic dims as ATC gears, one per test shape (Ascend310 takes no range and gets them)",
    )
    c.add_argument("--chip", help="sophon: bm1684x (default) or bm1684")
    c.add_argument(
        "--batch", help="sophon: BModel batch sizes, e.g. 1,4 (default: the recipe's [sophon] batch)"
    )
    c.add_argument(
        "--quantize",
        help="device precision: F32 (default), F16, BF16, INT8 (fp32/fp16/... too); "
        "trt takes F32, F16, INT8; sophon all four; a target that cannot honour it refuses it",
    )
    c.add_argument(
        "--calib",
        metavar="DIR",
        help="INT8 (sophon, trt): folder of calibration images (through the recipe's [preprocess]) or "
        ".npy/.npz inputs; every one is used",
    )
    c.add_argument(
        "--min-agreement",
        metavar="SHARE",
        help="sophon INT8 with real images (--images, or images in --calib): keep the layers whose INT8 "
        "error changes what the model reads in F32 until this share of images reads the same as the "
        "float model (default 0.99; 0 turns the search off); the keep-list goes to precision.json",
    )
    c.add_argument(
        "--keep",
        metavar="precision.json",
        help="sophon INT8: keep the ONNX nodes a previous search listed in F32 (no search)",
    )
    c.add_argument(
        "--force",
        action="store_true",
        help="replace OUT/<model>-<target>/ even when it holds files "
        "ocrgraft did not write (default: refuse and name them)",
    )
    c.add_argument(
        "--trust-code",
        action="store_true",
        help="a TorchScript --weights file is code: also run it, "
        "to compare its outputs with the zoo model (default: only its tensors are read)",
    )
    c.add_argument(
        "--recipe",
        metavar="FILE",
        help="a recipe TOML (the zoo's schema: [inputs.*], [preprocess], [decoder], [verify]); "
        "laid over a zoo model's own",
    )
    c.add_argument("--dict", metavar="FILE", help="CTC recognizer: a PaddleOCR character dictionary")
    c.add_argument(
        "--dict-space",
        action=argparse.BooleanOptionalAction,
        help="a space class follows the dictionary (PaddleOCR's use_space_char; default: the recipe's, "
        "else no)",
    )
    images_flags(c)
    inputs_flag(c)
    explain_flag(c)
    shape_flag(c)
    tolerance_flags(c)
    c.set_defaults(func=cmd_convert)

    ev = sub.add_parser(
        "eval",
        help="the accuracy table of a conversion's artifacts on real images",
        description="Run every artifact of OUT_DIR that runs here (the source ONNX, the final ONNX) on the "
        "images, read them with the conversion's recipe, and add the table to its report.",
    )
    ev.add_argument(
        "out_dir", metavar="OUT_DIR", help="a conversion's output folder, e.g. out/ppocrv4-rec-ort"
    )
    images_flags(ev, required=True)
    json_flag(ev)
    ev.set_defaults(func=cmd_eval)

    mx = sub.add_parser(
        "matrix",
        help="many conversions from one TOML file (models x targets x chips x precisions x batches) on Ray",
        description="Run every cell of a conversion matrix as a Ray task (a local Ray sized to this machine, "
        "or a cluster with --address); a cell whose inputs are unchanged since it finished is not run "
        "again; writes matrix.md, matrix.json and matrix.png. The file format is in the README.",
    )
    mx.add_argument("file", metavar="FILE.toml", help="the matrix: models, targets and the axes to cross")
    mx.add_argument("--out", help="where the cells' folders go (default: the file's out, else out/matrix)")
    mx.add_argument("--address", help="an existing Ray cluster, e.g. ray://head:10001 or auto")
    mx.add_argument(
        "--workers", type=_at_least(1), help="local Ray: cells at once (default: the cores / --threads)"
    )
    mx.add_argument(
        "--threads",
        type=_at_least(1),
        default=1,
        help="cores per cell: each cell asks Ray for this many and its libraries use as many threads "
        "(default 1; more where a conversion uses cores well and cells are few)",
    )
    json_flag(mx)
    mx.set_defaults(func=cmd_matrix)

    sm = sub.add_parser(
        "samples",
        help="render labelled text-line images (and pages) offline, to try --images on",
        description="Render text lines with known labels (labels.txt beside them) with the DejaVu Sans font "
        "matplotlib ships, and optionally pages of lines for detectors: real text to check a conversion "
        "on, made offline.",
    )
    sm.add_argument("folder", help="a new or empty folder")
    sm.add_argument("--count", type=_at_least(1), default=20, help="text lines (default 20)")
    sm.add_argument(
        "--pages", type=_at_least(0), default=0, help="also this many pages of lines, for detectors"
    )
    sm.add_argument("--seed", type=int, default=0, help="the same seed gives the same images")
    sm.set_defaults(func=cmd_samples)

    a = sub.add_parser(
        "apply",
        help="run named passes on an ONNX file, verifying each stage",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("input", metavar="IN", help="the .onnx file to rewrite (left as it is)")
    a.add_argument("output", metavar="OUT", help="the .onnx file to write (an existing model is replaced)")
    a.add_argument("--passes", "-p", required=True, help="comma-separated pass names")
    a.add_argument("--stages", metavar="DIR", help="also save every stage that changed the graph into DIR")
    a.add_argument(
        "--no-verify",
        action="store_true",
        help="rewrite without running or comparing anything (no --shapes needed); the output is unchecked",
    )
    inputs_flag(a)
    explain_flag(a)
    shape_flag(a)
    tolerance_flags(a)
    json_flag(a)
    a.set_defaults(func=cmd_apply)

    ps = sub.add_parser("passes", help="list the passes with their docs")
    ps.add_argument("--target", "-t", help="only passes this target uses")
    json_flag(ps)
    ps.set_defaults(func=cmd_passes)

    i = sub.add_parser("inspect", help="inputs, outputs, dynamic dims, opset and op histogram of a model")
    i.add_argument("file")
    json_flag(i)
    i.set_defaults(func=cmd_inspect)

    cp = sub.add_parser("compare", help="run two models on the same random inputs and compare outputs")
    cp.add_argument("a", metavar="A", help="reference model")
    cp.add_argument("b", metavar="B", help="model to check")
    shape_flag(cp)
    tolerance_flags(cp)
    json_flag(cp)
    cp.set_defaults(func=cmd_compare)

    v = sub.add_parser("view", help="serve a model, or a conversion's stages, in Netron on localhost")
    v.add_argument("path", help="an .onnx file or an output folder out/<model>-<target>")
    v.add_argument("--port", type=_port, default=8080, help="port (the next free one if it is taken)")
    v.add_argument(
        "--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)"
    )
    v.add_argument("--browse", action="store_true", help="also open a browser")
    v.add_argument("--no-wait", action="store_true", help=argparse.SUPPRESS)
    v.set_defaults(func=cmd_view)
    return p


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line on stderr and a non-zero exit; SIGTERM ends a run like Ctrl-C (the
    temporary output is removed, nothing is half-written); `--debug` anywhere shows tracebacks."""
    signal.signal(signal.SIGTERM, _terminate)
    if hasattr(sys.stdout, "reconfigure"):  # a name from a non-UTF-8 file name prints with \x escapes
        sys.stdout.reconfigure(errors="backslashreplace")
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _run(argv, debug)
    except KeyboardInterrupt as exc:
        what = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"ocrgraft: {what}; nothing was written", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # `ocrgraft passes | head`: the reader has gone, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every cleanup on the way out runs."""


def _terminate(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough; the cleanup must not be cut short
    raise Terminated()


def _run(argv: list[str], debug: bool) -> int:
    from ocrgraft.core.errors import OcrgraftError

    args = build_parser().parse_args(argv)
    progress.QUIET = args.quiet  # -q: no progress lines or bars (errors still print)
    if args.verbose:  # the passes' and targets' own log lines too
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return args.func(args)
    except OcrgraftError as exc:
        if debug:
            raise
        print(f"ocrgraft: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        raise
    except OSError as exc:
        if debug:
            raise
        print(f"ocrgraft: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"ocrgraft: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def describe_os_error(exc: OSError) -> str:
    """The environment's failures (disk full, read-only, permissions), said with what to do."""
    where = exc.filename or "the output"
    advice = {
        errno.ENOSPC: (
            f"no space left on the device while writing {where}: free some space or choose another --out"
        ),
        errno.EDQUOT: f"disk quota exceeded while writing {where}: free some space or choose another --out",
        errno.EROFS: f"{where} is on a read-only file system: choose another --out",
        errno.EACCES: f"permission denied: {where}: check its permissions or choose another location",
        errno.EPERM: f"operation not permitted: {where}: check its permissions or choose another location",
        errno.ENOTDIR: f"{where}: a part of this path is a file, not a folder",
        errno.EISDIR: f"{where} is a folder where a file was expected",
        errno.ENAMETOOLONG: f"{where}: the file name is too long",
    }
    if exc.errno is None:  # raised by a library with a message of its own, not by the system
        return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    return advice.get(exc.errno, f"{exc.strerror or type(exc).__name__}: {where}")
