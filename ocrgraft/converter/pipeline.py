"""Pipeline: one in-memory graph through a list of passes, each stage saved and checked.

Every exact stage runs in ONNX Runtime on the same random, non-zero inputs at every shape case
(min / opt / max) and is compared with the previous checked stage and with the source model. A pass
that sets `uses_samples` (to-fp16) is handed those inputs as `samples` before it runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_ir as ir

from ocrgraft.core.bisect import first_divergence
from ocrgraft.core.compare import FP32, CaseComparison, OutputDiff, Tolerance, compare_outputs
from ocrgraft.core.errors import OcrgraftError, VerificationError
from ocrgraft.core.graph import all_nodes
from ocrgraft.core.modelio import SharedWeights, atomic_file, cycle_collector_paused, to_bytes, to_ir
from ocrgraft.core.progress import busy, steps
from ocrgraft.core.reuse import Layout, StageRun, TensorKeys, layout, plan
from ocrgraft.core.runner import Runner, fit_ir_version
from ocrgraft.core.shapes import IMAGE_LABEL, Case, ShapeSet, is_static, random_inputs, require_tensor
from ocrgraft.passes.base import CHANGES, EXACT, LEGALIZE, Pass, parse_pass_list

Outputs = dict[str, np.ndarray]
EXPLAIN_LINES = 10  # 'not rewritten' lines per stage on the console (the report has all)
SourceFn = Callable[[dict[str, np.ndarray]], Outputs]


@dataclass
class Stage:
    """What one step did and how it compares; becomes a row of the report."""

    index: int
    name: str
    semantics: str
    rewrites: int
    changed: bool
    nodes: int
    op_delta: dict[str, int]
    seconds: float
    verify_seconds: float = 0.0
    save_seconds: float = 0.0  # serializing and writing the stage file
    verified: str = "no"  # "yes", "unchanged", or why not
    max_abs: float | None = None  # against the source, over every case and output
    max_rel: float | None = None
    max_abs_prev: float | None = None
    file: str | None = None
    comparisons: list[dict] = field(default_factory=list)
    explain: list[str] = field(default_factory=list)  # with explain on: where the pass did not fire, and why
    tolerance: str = ""  # the tolerance this stage was checked at against the previous one
    ran: str = ""  # what of the stage its check ran, when not all of it (core/reuse.py)


@dataclass
class PipelineResult:
    model: ir.Model
    stages: list[Stage]
    cases: list[Case]
    tolerance: Tolerance
    shapes: ShapeSet
    noise_floor: float | None = None  # max |ORT optimized - ORT unoptimized| of the source, if measured
    # ONNX Runtime's outputs per case title, kept from the checks so that nothing runs twice: the
    # exported model as it came in (when a framework was the reference) and the final model (when the
    # last change was run)
    raw_outputs: dict[str, Outputs] | None = None
    final_outputs: dict[str, Outputs] | None = None

    @property
    def rewrites(self) -> int:
        return sum(s.rewrites for s in self.stages)


@dataclass
class _Step:
    """A stage as the passes left it, and what its check will run."""

    stage: Stage
    pass_: Pass
    check: str = ""  # EXACT: checked; CHANGES: run, the new reference; "": not run
    data: bytes | None = None
    cases: list[Case] = field(default_factory=list)
    layout: Layout | None = None


def _apply(p: Pass, model: ir.Model):
    try:
        return p(model)
    except OcrgraftError:
        raise
    except Exception as exc:
        raise OcrgraftError(
            f"pass '{p.name}' failed on this model: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def _forget(kept: dict, last_use: dict[bytes, int], run: int) -> None:
    """Drop the kept tensors no check after `run` starts from."""
    for key in [k for k in kept if last_use.get(k, -1) <= run]:
        del kept[key]


def _ran(run: StageRun, run_stage: list[int]) -> str:
    """What a check ran, when it was not the whole stage."""
    if not run.parts:
        return ""
    plan_ = run.plan
    sources = ", ".join(f"{run_stage[r]:02d}" for r in sorted(plan_.sources))
    whole = f"; {run.wholes} of {run.wholes + run.parts} cases ran whole" if run.wholes else ""
    if not plan_.ran:
        return f"ran no node: the same computation as stage {sources}{whole}"
    return f"ran {plan_.ran} of {plan_.nodes} nodes; the rest as stage {sources} computed it{whole}"


def op_histogram(model: ir.Model) -> Counter:
    return Counter(n.op_type for n in all_nodes(model))


FLOOR_MULTIPLE = 4.0  # stages are checked at atol >= this many times the model's noise floor


class Pipeline:
    """Run passes in order on one graph, save each stage, verify each exact stage.

    Pipeline(["eliminate-identity", "fold-constants"]).run(model, shapes="x:1x3x32x32,1x3x32x100")

    `inputs` are user-given test inputs {input name: array} (a list of arrays for a sequence input),
    for models whose random inputs are invalid (indices a graph computes with, data-dependent sizes) or
    cannot be drawn (sequences). A given input is fed exactly that array in every case, at its own
    shape, and `shapes` need not name it (if `shapes` does name it, it is drawn at random there like
    any other). When every input is given, the given arrays are one more case, labelled 'given'; the
    only case when `shapes` names none of them.

    The tolerance is never tighter than the model's own float32 noise floor: how far ONNX Runtime's
    graph optimizations (themselves exact rewrites) move the source's outputs on the same cases. A
    correct rewrite of a sensitive model moves them as much; each stage is checked at `atol` raised to
    `floor_multiple` times that floor. `floor_multiple=None` checks at `tolerance` exactly (what an
    explicit --atol/--rtol asks for).

    `images` are real inputs [(name, {input: array})], e.g. preprocessed text lines: each is one more
    case, labelled 'image <name>', checked at every stage next to the random ones at its own shape.
    """

    def __init__(
        self,
        passes,
        *,
        tolerance: Tolerance = FP32,
        tolerances: dict[str, Tolerance] | None = None,
        stages_dir: str | Path | None = None,
        verify: bool = True,
        samples: int = 2,
        seed: int = 0,
        progress: Callable[[str], None] | None = None,
        inputs: dict[str, np.ndarray] | None = None,
        explain: bool | str | list[str] = False,
        images: list[tuple[str, dict[str, np.ndarray]]] | None = None,
        floor_multiple: float | None = FLOOR_MULTIPLE,
    ):
        self.passes: list[Pass] = parse_pass_list(passes)
        self.tolerance = tolerance
        self.tolerances = tolerances or {}
        self.stages_dir = Path(stages_dir) if stages_dir else None
        self._weights: SharedWeights | None = None  # the stages' one weights file, made at the first save
        self.verify = verify
        self.samples = samples
        self.seed = seed
        self.progress = progress or (lambda msg: None)
        self.verbose = progress is not None  # live check bars only for a caller that wants progress
        self.inputs = dict(inputs or {})
        self.images = list(images or [])
        self.floor_multiple = floor_multiple
        # True: every pass explains itself; names ('a,b' or a list): those passes
        self.explain = (
            bool(explain)
            if not explain or isinstance(explain, bool)
            else set(explain.split(",") if isinstance(explain, str) else explain)
        )
        if isinstance(self.explain, set):
            known = {p.name for p in self.passes}
            unknown = sorted(self.explain - known)
            if unknown:
                raise OcrgraftError(
                    f"--explain names {', '.join(unknown)}, which this run does not run "
                    f"(its passes: {', '.join(p.name for p in self.passes)})"
                )

    def tolerance_for(self, p: Pass) -> Tolerance:
        return self.tolerances.get(p.name) or p.tolerance or self._tolerance

    _tolerance: Tolerance = FP32  # the run's tolerance, raised to the noise floor once it is measured

    def _floor(self, source_bytes: bytes, cases: list[Case], optimized: dict[str, Outputs]) -> float:
        """Max |optimized - unoptimized| ONNX Runtime output of the source, on the first random case of
        each shape (a second random input at the same shape costs a full unoptimized run, the slowest
        one, and moves the floor little) and on every real image: the floor taken on a few inputs moved
        ~8x with which lines came first, too tight then for a correct pass on another line."""
        plain = Runner(source_bytes, what="the source without ONNX Runtime's optimizations", optimize=False)
        worst, shapes = 0.0, set()
        for case in cases:
            shape = tuple(sorted(case.shapes.items()))
            if shape in shapes and not case.from_image:
                continue
            shapes.add(shape)
            ref, got = optimized.get(case.title) or {}, plain.run(case.feeds)
            for name, a in got.items():
                b = ref.get(name)
                if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
                    continue  # a sequence or optional output: its tensors are checked, not floored
                if a.shape == b.shape and a.dtype.kind == "f" and a.size:
                    diff = np.abs(a.astype(np.float64) - b)
                    worst = max(worst, float(np.nanmax(np.where(np.isfinite(diff), diff, 0.0))))
        return worst

    def run(
        self, model, shapes=None, source: SourceFn | None = None, source_name: str = "source"
    ) -> PipelineResult:
        """Rewrite `model` in place. `source` gives the reference outputs (default: the model as given,
        run in ONNX Runtime); `shapes` is a ShapeSet or 'x:MIN,OPT,MAX' text."""
        with cycle_collector_paused():  # see modelio: large graphs
            return self._run(model, shapes, source, source_name)

    def _run(self, model, shapes, source: SourceFn | None, source_name: str) -> PipelineResult:
        """Every pass first (they are quick beside the checks), then the checks in order: knowing every
        stage, each check runs only what no earlier run computed (core/reuse.py)."""
        self._weights = None  # each run writes its own stages/weights.bin
        model = to_ir(model)
        lowered = fit_ir_version(model)  # a file from the newest onnx, which ONNX Runtime would refuse
        if lowered:
            self.progress(f"note: {lowered}")
        shapes = ShapeSet.parse(shapes)
        if self.verify:
            shapes = shapes.resolve(self._drawn(model, shapes))
        hist = op_histogram(model)
        stage0 = Stage(0, "source", EXACT, 0, False, sum(hist.values()), {}, 0.0)
        t = time.perf_counter()
        source_bytes = to_bytes(model) if self.verify or self.stages_dir else None  # serialized once for both
        if self.stages_dir:
            stage0.file = self._save(source_bytes, 0, "source")
            stage0.save_seconds = time.perf_counter() - t
        cases = self._draw_cases(model, shapes) if self.verify else []
        tensor_keys = TensorKeys()
        source_layout = layout(model, tensor_keys) if self.verify else None
        if self.verify and self.passes:
            n = len(self.passes)
            self.progress(f"running {n} pass{'es' if n > 1 else ''} first, then checking every changed stage")
        steps_, failure = self._rewrite(model, shapes, cases, hist, tensor_keys)

        checks = [step for step in steps_ if step.check]
        plans = plan([source_layout] + [step.layout for step in checks]) if self.verify else []
        kept: dict[bytes, dict[str, np.ndarray]] = {}  # what later checks start from: key -> case -> tensor
        last_use = {key: r for r, run in enumerate(plans) for key in run.cut.values()}
        previous: dict[str, Outputs] = {}
        raw_outputs = None
        current = self.verify  # `previous` holds the outputs of the model as it is now
        source_tol = self.tolerances.get("source", self.tolerance)
        own = None
        if self.verify:  # on large inputs the reference runs take a while: say what is running
            self.progress(
                f"[0/{len(self.passes)}] source: {stage0.nodes} nodes; running the test inputs at "
                f"{shapes.describe() or 'its static shapes'} for the reference outputs"
            )
            t = time.perf_counter()
            try:
                own = StageRun(source_bytes, plans[0], source_layout, kept, f"the {source_name} model")
                own.whole()  # loaded now: a source ONNX Runtime cannot load is said here
            except OcrgraftError as exc:
                if source is None:
                    raise
                own = None  # e.g. a vendor-only form; later stages are still checked against the framework
                stage0.verified = f"not checked: {exc}"
            for case in cases:
                case.expected = source(case.feeds) if source else own(case.title, case.feeds)
            if source is None:
                stage0.verified = "reference"
                previous = {c.title: c.expected for c in cases}
            elif own is not None:  # the exported ONNX itself against the framework
                previous = self._check(stage0, own, cases, {}, source_tol, source_tol)
                raw_outputs = previous
            stage0.verify_seconds = time.perf_counter() - t
        self._tolerance, floor = self.tolerance, None
        if self.verify and own is not None and self.floor_multiple and cases:
            t = time.perf_counter()
            floor = self._floor(source_bytes, cases, previous)
            if self.floor_multiple * floor > self.tolerance.atol:
                self._tolerance = Tolerance(self.floor_multiple * floor, self.tolerance.rtol)
                source_tol = Tolerance(max(source_tol.atol, self._tolerance.atol), source_tol.rtol)
            stage0.verify_seconds += time.perf_counter() - t
        stage0.tolerance = str(source_tol)
        stages = [stage0]
        self.progress(
            f"    {len(cases)} test inputs run on the source in {stage0.verify_seconds:.1f}s"
            if cases
            else f"[0/{len(self.passes)}] source: {stage0.nodes} nodes"
        )
        if floor is not None:
            self.progress(
                f"    noise floor {floor:.2g} (ONNX Runtime's optimizations on vs off); stages checked at "
                f"{self._tolerance}"
                + (
                    f" ({self.floor_multiple:g} x floor)"
                    if self._tolerance.atol > self.tolerance.atol
                    else ""
                )
            )
        _forget(kept, last_use, 0)
        changed_at = 0
        checked = source_bytes  # the last stage that was checked: a failing one is bisected against it
        run_stage = [0] + [step.stage.index for step in checks]  # each run's stage
        r = 0  # the run index of the last check
        for at, step in enumerate(steps_):
            stage, p = step.stage, step.pass_
            current = current and not stage.changed  # until a run below says otherwise
            if step.check:
                r += 1
                t = time.perf_counter()
                run = StageRun(step.data, plans[r], step.layout, kept, f"stage {stage.index:02d} '{p.label}'")
                if step.check == CHANGES:
                    # changes the numbers on purpose: later stages are compared with this one, not the source
                    previous = {c.title: run(c.title, c.feeds) for c in step.cases}
                    changed_at = stage.index
                else:
                    # against the source, a pass that loosened the tolerance (fp16) loosens it for all
                    # later stages
                    source_tol = Tolerance(
                        max(source_tol.atol, self.tolerance_for(p).atol),
                        max(source_tol.rtol, self.tolerance_for(p).rtol),
                    )
                    stage.tolerance = str(self.tolerance_for(p))
                    try:
                        previous = self._check(
                            stage,
                            run,
                            step.cases,
                            previous,
                            self.tolerance_for(p),
                            None if changed_at else source_tol,
                            models=(checked, step.data, source_bytes),
                        )
                    except VerificationError:
                        # the stage files so far, as a run that stopped here would have left them
                        for later in steps_[at + 1 :]:
                            if later.stage.file:
                                Path(later.stage.file).unlink(missing_ok=True)
                        raise
                checked, current = step.data, True
                step.data = None  # held once, as the last checked stage
                stage.verify_seconds = time.perf_counter() - t
                stage.ran = _ran(run, run_stage)
                _forget(kept, last_use, r)
            elif stage.verified == "unchanged":
                stage.max_abs, stage.max_rel = stages[-1].max_abs, stages[-1].max_rel
            stages.append(stage)
            self.progress(_progress_line(stage, len(self.passes)))
            for line in stage.explain[:EXPLAIN_LINES]:
                self.progress(f"    not rewritten: {line}")
            if len(stage.explain) > EXPLAIN_LINES:
                self.progress(f"    … {len(stage.explain) - EXPLAIN_LINES} more in the report")
        if failure is not None:  # a pass that failed, once the stages before it are checked
            raise failure
        given = {k: [v] for k, v in _shapes(self.inputs).items() if k not in shapes.shapes}
        return PipelineResult(
            model,
            stages,
            cases,
            self._tolerance,
            ShapeSet({**shapes.shapes, **given}),
            noise_floor=floor,
            raw_outputs=raw_outputs,
            final_outputs=previous if current else None,
        )

    def _rewrite(
        self, model: ir.Model, shapes: ShapeSet, cases: list[Case], hist: Counter, tensor_keys: TensorKeys
    ) -> tuple[list[_Step], OcrgraftError | None]:
        """Run every pass, saving each changed stage; what each stage's check will run. A pass that fails
        ends the list; its error is raised once the stages before it are checked."""
        steps_: list[_Step] = []
        vendor_form = ""
        for i, p in enumerate(self.passes, 1):
            t = time.perf_counter()
            # a pass that measures the model (to-fp16's activation ranges) gets this stage's test inputs,
            # unless it was given its own
            lend = bool(cases) and p.uses_samples and p.samples is None
            p.explain = self.explain is True or isinstance(self.explain, set) and p.name in self.explain
            try:
                if lend:
                    p.samples = [c.feeds for c in self._cases_for(model, shapes, cases)]
                result = _apply(p, model)
            except OcrgraftError as exc:
                return steps_, exc
            finally:
                if lend:
                    p.samples = None
            after = result.ops if result.modified else hist  # a pass that changed something counted its ops
            delta = {
                op: after[op] - hist[op] for op in sorted(set(hist) | set(after)) if after[op] != hist[op]
            }
            hist = after
            stage = Stage(
                i,
                p.label,
                p.semantics,
                result.rewrites,
                result.modified,
                sum(after.values()),
                delta,
                time.perf_counter() - t,
            )
            stage.explain = list(p.misses)
            step = _Step(stage, p)
            if self.stages_dir and result.modified:  # one serialization for the file and the check;
                t = time.perf_counter()  # a pass that changed nothing leaves no copy of the same graph
                step.data = to_bytes(model)
                stage.file = self._save(step.data, i, p.name)
                stage.save_seconds = time.perf_counter() - t
            if not self.verify:
                stage.verified = "verification off"
            elif vendor_form:
                stage.verified = f"not checked: ONNX Runtime cannot run the {vendor_form}"
            elif p.semantics == LEGALIZE and result.modified:
                stage.verified = "not checked: a vendor-only form ('legalize' pass)"
                vendor_form = f"vendor-only form made at stage {i:02d}"
            elif not result.modified:
                stage.verified = "unchanged"
            else:
                if p.semantics == CHANGES:
                    stage.verified = "not checked: changes the numbers on purpose ('changes' pass)"
                step.check = CHANGES if p.semantics == CHANGES else EXACT
                step.data = step.data or to_bytes(model)
                try:
                    step.cases = self._cases_for(model, shapes, cases)
                except OcrgraftError as exc:
                    return steps_, exc
                step.layout = layout(model, tensor_keys)
            steps_.append(step)
        return steps_, None

    # -- helpers ---------------------------------------------------------------------------

    def _drawn(self, model: ir.Model, shapes: ShapeSet) -> list[ir.Value]:
        """The inputs drawn at random: those not given, or named in `shapes`. A sequence input cannot
        be drawn; refused here, before its shape is asked for."""
        drawn = [v for v in model.graph.inputs if v.name not in self.inputs or v.name in shapes.shapes]
        for value in drawn:
            require_tensor(value)
        return drawn

    def _draw_cases(self, model: ir.Model, shapes: ShapeSet) -> list[Case]:
        """`samples` random cases per shape case (a model without inputs: one case), given inputs fixed;
        plus the given inputs as one case of their own when they are all the inputs; plus each image.
        Their reference outputs are filled in later, when the source runs."""
        inputs = list(model.graph.inputs)
        given = {k: v for k, v in self.inputs.items() if k not in shapes.shapes}
        unknown = sorted(set(self.inputs) - {v.name for v in inputs})
        if unknown:
            raise OcrgraftError(
                f"test inputs given for {', '.join(unknown)}, but the model's inputs are: "
                f"{', '.join(v.name for v in inputs)}"
            )
        if not inputs:  # nothing to draw: one run
            return [Case("opt", {}, {}, {})]
        cases = []
        for ci, (label, case_shapes) in enumerate(shapes.cases()):
            for s in range(self.samples):
                feeds = random_inputs(inputs, case_shapes, seed=self.seed * 1000 + ci * 10 + s, given=given)
                name = label if self.samples == 1 else f"{label}#{s + 1}"
                cases.append(Case(name, {**case_shapes, **_shapes(given)}, feeds, {}))
        if inputs and len(self.inputs) == len(inputs):
            cases.append(Case("given", _shapes(self.inputs), dict(self.inputs), {}))
        for name, image_feeds in self.images:
            feeds = {**given, **image_feeds}
            missing = [v.name for v in inputs if v.name not in feeds]
            if missing:
                raise OcrgraftError(
                    f"image {name} feeds {', '.join(image_feeds)}; the model also reads {', '.join(missing)} "
                    "(give them with --inputs FILE.npz)"
                )
            cases.append(Case(IMAGE_LABEL + name, _shapes(feeds), feeds, {}))
        return cases

    def _cases_for(self, model: ir.Model, shapes: ShapeSet, cases: list[Case]) -> list[Case]:
        """Cases whose shapes this stage accepts (a dim a pass fixed rules out the others; given too)."""
        declared = {
            v.name: v.shape
            for v in model.graph.inputs
            if isinstance(v.type, ir.TensorType) and v.shape is not None
        }
        keep = [c for c in cases if all(_fits(d, declared[k]) for k, d in c.shapes.items() if k in declared)]
        if not keep:
            allowed = shapes.clamp(list(model.graph.inputs))
            raise OcrgraftError(
                f"no test shape fits the model after this pass ({allowed.describe()}); "
                "give --shapes within the fixed dims"
            )
        return keep

    def _check(
        self,
        stage: Stage,
        run: StageRun,
        cases: list[Case],
        previous: dict[str, Outputs],
        tol: Tolerance,
        source_tol: Tolerance | None,
        models: tuple[bytes | None, bytes | None, bytes | None] = (None, None, None),
    ) -> dict[str, Outputs]:
        """Compare with the previous checked stage at `tol` and, unless `source_tol` is None (after an
        opt-in 'changes' pass), with the source. A failure is bisected: `models` are the previous
        checked stage, this stage and the source, as bytes."""
        outputs: dict[str, Outputs] = {}
        worst_src: list[OutputDiff] = []
        worst_prev: list[OutputDiff] = []
        with steps(f"    checking {stage.name}", len(cases), "case", show=self.verbose) as bar:
            for case in cases:
                got = run(case.title, case.feeds)
                self._compare(stage, case, got, previous, tol, source_tol, models, worst_src, worst_prev)
                outputs[case.title] = got
                bar.advance(note=case.title)
        compared = [d for d in worst_src + worst_prev if np.prod(d.shape)]
        stage.verified = "yes" if compared else "not checked: every output was empty at the test shapes"
        stage.max_abs = max((d.max_abs for d in worst_src), default=None)
        stage.max_rel = max((d.max_rel for d in worst_src), default=None)
        stage.max_abs_prev = max((d.max_abs for d in worst_prev), default=None)
        return outputs

    def _compare(self, stage, case, got, previous, tol, source_tol, models, worst_src, worst_prev) -> None:
        """One case against the previous stage and the source; a failure is bisected and raised."""
        prev = previous.get(case.title)
        refs = (
            [("the previous stage", prev, worst_prev, tol)]
            if prev is not None and prev is not case.expected
            else []
        )
        if source_tol is not None:
            refs.append(("the source", case.expected, worst_src, source_tol))
        for ref_name, ref, sink, ref_tol in refs:
            cmp = CaseComparison(case.title, case.shapes, compare_outputs(got, ref, ref_tol))
            sink.extend(cmp.diffs)
            if sink is worst_src:
                stage.comparisons.append(cmp.to_json())
            if not cmp.ok:
                before = models[0] if ref_name == "the previous stage" else models[2]
                where = None
                if before is not None and models[1] is not None:
                    self.progress(
                        f"    stage {stage.index:02d} failed; looking for the first diverging tensor"
                    )
                    where = first_divergence(before, models[1], case.feeds, ref_tol)
                error = VerificationError(
                    f"stage {stage.index:02d} '{stage.name}' changed the outputs against {ref_name} "
                    f"at {case.title}: {cmp.worst().describe()}; tolerance {ref_tol}"
                    + (f"; {where.describe()}" if where else "")
                )
                error.stage, error.divergence, error.pair = stage, where, (before, models[1])
                raise error

    def _save(self, data: bytes, index: int, name: str) -> str:
        """A stage file whose weights live once in stages/weights.bin (shared by every stage)."""
        if self._weights is None:
            self._weights = SharedWeights(self.stages_dir)
        path = self.stages_dir / f"{index:02d}_{name}.onnx"
        with (
            atomic_file(path) as tmp,
            busy(f"    saving {path.name}", line=False) if self.verbose else nullcontext(),
        ):
            tmp.write_bytes(self._weights.externalize(data))
        return str(path)


def _fits(dims: tuple[int, ...], shape: ir.Shape) -> bool:
    """Same rank, and equal where the model's input dim is fixed."""
    return len(dims) == len(shape) and all(d == w or not is_static(d) for w, d in zip(dims, shape))


def _shapes(feeds: dict) -> dict[str, tuple[int, ...]]:
    """Each given input's shape (a sequence's: its length)."""
    return {k: (len(v),) if isinstance(v, list) else tuple(np.shape(v)) for k, v in feeds.items()}


def _progress_line(stage: Stage, total: int) -> str:
    err = (
        f", max abs err {stage.max_abs:.2g}" if stage.max_abs is not None and stage.verified == "yes" else ""
    )
    check = f", checked in {stage.verify_seconds:.2f}s" if stage.verify_seconds >= 0.01 else ""
    check += f" ({stage.ran})" if stage.ran else ""
    return (
        f"[{stage.index}/{total}] {stage.name}: {stage.rewrites} rewrites, {stage.nodes} nodes, "
        f"{stage.seconds:.2f}s{check}, verified: {stage.verified}{err}"
    )
