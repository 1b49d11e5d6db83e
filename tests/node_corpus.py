"""ONNX's backend node-test corpus as a check that the generic passes never silently change a model.

The ~1900 node test cases (one op, or its function expansion, with its own inputs) are rebuilt in
memory from the installed onnx wheel (`collect_testcases`, what `backend-test-tools generate-data`
writes to disk). For every case ONNX Runtime can run, the generic passes rewrite the model without
the verifier, and the rewritten model must give the original's ORT outputs on the case's own inputs
(`TOL`; NaN equals NaN, equal infinities are equal, output names and count unchanged). A second
measure runs the Pipeline's own verifier (its random inputs at the case's input shapes) and counts
the cases it really compares. Summary table, silent changes, crashes and unverified cases:

    .venv/bin/python tests/node_corpus.py [--no-verifier] [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from ocrgraft import Pipeline
from ocrgraft.core.modelio import to_bytes
from ocrgraft.passes import GENERIC_PASSES

TOL = {"atol": 1e-5, "rtol": 1e-4}  # numpy.allclose's rule: |got - want| <= atol + rtol * |want|

# Cases to leave out if ORT runs them: outputs that differ from run to run (random ops). ORT 1.31 has no
# RandomUniformLike(22), so these are "ort-cannot-run" today. Dropout carries a seed: deterministic, kept.
NONDETERMINISTIC = {
    "test_bernoulli": "Bernoulli draws random numbers",
}

STATUSES = ("ort-cannot-run", "excluded", "compared", "silent-change", "crash")


@dataclass
class NodeCase:
    name: str
    model: onnx.ModelProto
    data_sets: list[tuple[dict, list]]  # (feeds by input name, the reference outputs) per data set


@dataclass
class Result:
    name: str
    status: str  # one of STATUSES
    detail: str = ""
    verifier: str = ""  # with verifier=True: "compared", or why the verifier did not compare


def load_cases(names: list[str] | None = None) -> list[NodeCase]:
    """The node test cases (all, or those whose name contains one of `names`), built in memory."""
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings():  # the generators cast out-of-range values on purpose
        warnings.simplefilter("ignore")
        collected = node_cases.collect_testcases()
    out = []
    for case in collected:
        if names and not any(n in case.name for n in names):
            continue
        sets = []
        for inputs, outputs in case.data_sets:
            feeds = {info.name: _feed(info, x) for info, x in zip(case.model.graph.input, inputs)}
            sets.append((feeds, list(outputs)))
        out.append(NodeCase(case.name, case.model, sets))
    return out


def _feed(info: onnx.ValueInfoProto, value):
    """What ORT's Python API takes: arrays, lists of arrays for sequences, None for an empty optional."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if info.type.HasField("sequence_type"):
        return [numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v) for v in value]
    if info.type.HasField("optional_type") and value is None:
        return None
    return np.asarray(value)  # ORT refuses numpy scalars (rank-0 inputs come as np.float32(...))


def session(model: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def ort_outputs(sess: ort.InferenceSession, feeds: dict) -> dict:
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def differ(got, want) -> str:
    """'' when equal within TOL (recursing into sequences), else what differs."""
    if isinstance(want, list) or isinstance(got, list):
        if not (isinstance(want, list) and isinstance(got, list)) or len(got) != len(want):
            return f"sequence {_kind(got)} instead of {_kind(want)}"
        return next((f"[{i}] {d}" for i, (g, w) in enumerate(zip(got, want)) if (d := differ(g, w))), "")
    if want is None or got is None:
        return "" if want is None and got is None else f"{_kind(got)} instead of {_kind(want)}"
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"{got.dtype}{list(got.shape)} instead of {want.dtype}{list(want.shape)}"
    if want.dtype.kind in "OUS":
        return "" if np.array_equal(got, want) else "strings differ"
    g, w = got.astype(np.float64), want.astype(np.float64)
    close = np.isclose(g, w, equal_nan=True, **TOL)  # equal infinities are close
    if close.all():
        return ""
    i = np.unravel_index(int(np.argmin(close)), close.shape)
    return f"element {list(map(int, i))}: {g[i]:.6g} instead of {w[i]:.6g}"


def _kind(x) -> str:
    if isinstance(x, list):
        return f"list of {len(x)}"
    return "None" if x is None else f"array{list(np.shape(x))}"


def excluded(name: str) -> str:
    return next((why for key, why in NONDETERMINISTIC.items() if key in name), "")


def check_case(case: NodeCase, verifier: bool = False) -> Result:
    """Run one case: original in ORT, generic passes without the verifier, rewritten model in ORT."""
    try:
        original = session(case.model.SerializeToString())
        reference = [ort_outputs(original, feeds) for feeds, _ in case.data_sets]
    except Exception as exc:  # noqa: BLE001  (ORT cannot run this op / type / input here)
        return Result(case.name, "ort-cannot-run", _line(exc))
    if why := excluded(case.name):
        return Result(case.name, "excluded", why)
    try:
        rewritten = to_bytes(Pipeline(list(GENERIC_PASSES), verify=False).run(case.model).model)
    except Exception as exc:  # noqa: BLE001
        return Result(case.name, "crash", _line(exc))
    result = Result(case.name, "compared")
    try:
        sess = session(rewritten)
        for (feeds, _), want in zip(case.data_sets, reference):
            got = ort_outputs(sess, feeds)
            if list(got) != list(want):
                result = Result(case.name, "silent-change", f"outputs {list(got)} instead of {list(want)}")
                break
            if d := next((f"{k}: {d}" for k in want if (d := differ(got[k], want[k]))), ""):
                result = Result(case.name, "silent-change", d)
                break
    except Exception as exc:  # noqa: BLE001  (the original ran, the rewritten model does not)
        result = Result(case.name, "silent-change", f"rewritten model fails in ORT: {_line(exc)}")
    if verifier:
        result.verifier = verifier_compares(case)
    return result


def verifier_compares(case: NodeCase) -> str:
    """Whether the Pipeline's own verifier (random inputs at the shapes of the case's first data set)
    really compares this model: "compared" (it drew inputs ORT accepts, some output has elements, and no
    stage went unchecked), or why not."""
    from ocrgraft.core.shapes import ShapeSet

    feeds = case.data_sets[0][0]
    shapes = ShapeSet({k: [np.shape(v)] for k, v in feeds.items() if isinstance(v, np.ndarray)})
    try:
        result = Pipeline(list(GENERIC_PASSES), samples=1).run(case.model, shapes)
    except Exception as exc:  # noqa: BLE001
        return _line(exc)
    if not any(_elements(v) for c in result.cases for v in c.expected.values()):
        return "every output was empty"
    unchecked = [f"stage {s.name}: {s.verified}" for s in result.stages if s.verified.startswith("not")]
    return unchecked[0] if unchecked else "compared"


def _elements(value) -> int:
    if isinstance(value, list):
        return sum(map(_elements, value))
    return 0 if value is None else int(np.size(value))


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def run_corpus(names: list[str] | None = None, verifier: bool = False, progress=None) -> list[Result]:
    results = []
    for case in load_cases(names):
        results.append(check_case(case, verifier))
        if progress:
            progress(results[-1])
    return results


def summary(results: list[Result]) -> dict[str, int]:
    counts = Counter(r.status for r in results)
    runnable = len(results) - counts["ort-cannot-run"]
    out = {"cases": len(results), "ort-runnable": runnable, **{s: counts[s] for s in STATUSES[1:]}}
    if any(r.verifier for r in results):
        out["verifier-compared"] = sum(r.verifier == "compared" for r in results)
    return out


def main(argv: list[str]) -> int:
    logging.getLogger("onnxscript").setLevel(logging.ERROR)  # its folder explains every op it skips
    ort.set_default_logger_severity(4)  # failed runs are counted and listed below, not logged as they happen
    verifier = "--no-verifier" not in argv
    names = [a for a in argv if not a.startswith("--")] or None
    t = time.perf_counter()
    results = run_corpus(names, verifier)
    seconds = time.perf_counter() - t
    for r in results:
        if r.status in ("silent-change", "crash"):
            print(f"{r.status:14s} {r.name}: {r.detail}")
    if verifier:
        for r in results:
            if r.status != "ort-cannot-run" and r.verifier != "compared":
                print(f"{'not verified':14s} {r.name}: {r.verifier}")
    counts = summary(results)
    print(
        f"\nnode-test corpus, {seconds:.0f}s, outputs equal within atol {TOL['atol']:g} rtol {TOL['rtol']:g}"
    )
    for key, n in counts.items():
        share = (
            f"  {100 * n / counts['ort-runnable']:.1f}% of ORT-runnable"
            if key in ("compared", "verifier-compared") and counts["ort-runnable"]
            else ""
        )
        print(f"  {n:6d}  {key}{share}")
    return int(bool(counts["silent-change"] or counts["crash"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
