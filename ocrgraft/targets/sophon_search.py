"""INT8 that keeps accuracy: find the layers whose INT8 error changes what the model reads, and keep them
in float (a TPU-MLIR quantize table), until the INT8 program agrees with the float model on real images.

1. Rank: the INT8 program (`*_final.mlir`, what the code generator compiles) runs in TPU-MLIR's
   interpreter with every layer dumped on a few of the images; each layer is compared with ONNX Runtime's
   float value, and ranked by the similarity it loses itself (its cosine against the worst of the layers
   it reads), so a layer that only passes on an earlier error is not blamed for it.
2. Search: keep the top 1, 2, 4 layers in F32, deploy, and measure agreement on the images (share of
   items whose decoded text equals the float model's; mean mask IoU for a detector). When a few layers
   do not do it, keep one end of the network in F32: the first or the last 1, 4, 16, ... layers (INT8
   error made at the input, or built up toward the output), then bisect the length of the end that
   reached the goal. The whole network in F32 reads like the float model, so the search ends with a
   keep-list that reaches the goal, as short as the bisection finds.

The answer is a keep-list in ONNX node names (precision.json), which the build turns into the quantize
table model_deploy reads (`--quantize_table`, one `<layer> F32` per line).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from ocrgraft.core.bisect import layer_similarities
from ocrgraft.core.compare import mask_iou, normalize_text
from ocrgraft.core.decode import ProbMapDecoder, decoder_from
from ocrgraft.core.precision import PRECISION_FILE, node_key
from ocrgraft.core.runner import Runner
from ocrgraft.targets.sophon_layers import onnx_names

RANK_SAMPLES = 2  # images dumped layer by layer for the ranking
LISTED = 24  # kept layers named one by one in the report; beyond, the first and last
GREEDY_STEPS = (1, 2, 4)  # the worst-ranked layers tried in F32 before keeping an end of the network


@dataclass
class Kept:
    node: str  # the ONNX node (its first output's name when it has no name)
    op: str
    loss: float | None  # cosine similarity it loses on its own in INT8 (None: kept as part of the tail)
    precision: str = "F32"


@dataclass
class SearchResult:
    goal: float
    measure: str  # what agreement means here
    items: int
    steps: list[dict] = field(default_factory=list)  # {"kept": k, "how": ..., "agreement": a}
    keep: list[Kept] = field(default_factory=list)
    after: float = 0.0  # the agreement with `keep` in F32
    layers: int = 0  # ONNX nodes with a TPU-MLIR layer of their own

    @property
    def before(self) -> float | None:
        """Every layer INT8 (None when a given keep-list was only measured)."""
        first = self.steps[0]
        return first["agreement"] if first["how"] == "every layer INT8" else None

    @property
    def reached(self) -> bool:
        return self.after >= self.goal

    def describe(self) -> str:
        verdict = "reached" if self.reached else "NOT reached"
        kept = f"{len(self.keep)} kept in F32"
        if self.keep and len(self.keep) == self.layers:
            kept = (
                f"all {self.layers} layers kept in F32 (INT8 in name only: no part of it reads right in INT8)"
            )
        before = f"{self.before:.1%} with every layer INT8, " if self.before is not None else ""
        text = (
            f"INT8 agreement with the float model on {self.items} images ({self.measure}): "
            f"{before}{self.after:.1%} with {kept} (goal {self.goal:.0%} {verdict})"
        )
        if 0 < len(self.keep) <= LISTED:
            text += "; kept: " + ", ".join(f"{k.op} '{k.node}'" for k in self.keep)
        elif self.keep:
            text += f"; kept: {self.keep[0].op} '{self.keep[0].node}' to {self.keep[-1].op} "
            text += f"'{self.keep[-1].node}' in the graph's order, every one in {PRECISION_FILE}"
        return text

    def to_json(self, chip: str) -> dict:
        return {
            "target": "sophon",
            "chip": chip,
            "quantize": "INT8",
            "keep": [asdict(k) for k in self.keep],
            "goal": self.goal,
            "measure": self.measure,
            "items": self.items,
            "layers": self.layers,
            "agreement_before": self.before,
            "agreement_after": self.after,
            "steps": self.steps,
        }


def mlir_layers(mlir: Path) -> list[str]:
    """The layer (op location) names of a TPU-MLIR file, in order."""
    return list(dict.fromkeys(re.findall(r'loc\("([^"]+)"\)', mlir.read_text(errors="replace"))))


def quantize_table(nodes: list[str], mlir: Path, model_path: Path) -> tuple[list[str], list[str]]:
    """TPU-MLIR layer names (in the Top MLIR `mlir`) for ONNX nodes (named, or by their first output when
    unnamed, as the search writes them), and the nodes with no layer of their own (fused away)."""
    model = onnx.load(str(model_path), load_external_data=False)
    output_of = {node_key(n): n.output[0] for n in model.graph.node if n.output}
    to_onnx = onnx_names(mlir_layers(mlir), model_path)
    layer_of = {v: k for k, v in to_onnx.items()}
    layers, missing = [], []
    for node in nodes:
        layer = layer_of.get(output_of.get(node, ""))
        (layers if layer else missing).append(layer or node)
    return layers, missing


def rank_layers(dumps: list[dict[str, np.ndarray]], feeds: list[dict], model_path: Path) -> list[Kept]:
    """Layers by the cosine similarity they lose themselves in INT8, worst first (see the module doc)."""
    model = onnx.load(str(model_path), load_external_data=False)
    op_of = {o: (node_key(n), n.op_type) for n in model.graph.node for o in n.output}
    loss: dict[str, float] = {}
    for dump, feed in zip(dumps, feeds):
        pairs = onnx_names(list(dump), model_path)
        tensors = {v: dump[k].astype(np.float32) for k, v in pairs.items() if v not in feed}
        cosine = {name: 1.0 for name in feed}
        for value, sim in layer_similarities(model_path.read_bytes(), feed, tensors):
            cosine[value.name] = sim["cosine"]
            before = min((cosine.get(i.name, 1.0) for i in _compared_inputs(value, cosine)), default=1.0)
            loss[value.name] = max(loss.get(value.name, 0.0), before - sim["cosine"])
    ranked = sorted((v for v in loss if loss[v] > 0), key=lambda v: -loss[v])
    return [Kept(op_of[v][0], op_of[v][1], round(loss[v], 6)) for v in ranked]


def _compared_inputs(value, cosine: dict[str, float], depth: int = 8) -> list:
    """The nearest compared tensors `value` is computed from (through layers TPU-MLIR fused away)."""
    found, todo, seen = [], [value.producer()], set()
    while todo and depth:
        depth -= 1
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for inp in node.inputs:
            if inp is None or inp.const_value is not None:
                continue
            if inp.name in cosine:
                found.append(inp)
            elif inp.producer() is not None:
                todo.append(inp.producer())
    return found


def agreement_of(decoder_options: dict, got: list[np.ndarray], ref: list[np.ndarray]) -> tuple[float, str]:
    """How far INT8 outputs read like the float model's: share of equal decoded texts, or mean mask IoU."""
    decoder = decoder_from(decoder_options)
    if isinstance(decoder, ProbMapDecoder):
        ious = [mask_iou(g, r, decoder.threshold)[0] for g, r in zip(got, ref)]
        return float(np.mean(ious)), "mean mask IoU against the float model"
    texts = [[normalize_text(decoder.decode(o)[0][0]) for o in outs] for outs in (got, ref)]
    same = [a == b for a, b in zip(*texts)]  # spaces ignored, as the accuracy table compares texts
    return float(np.mean(same)), "share of items reading the same text as the float model"


def search(
    *,
    feeds: list[dict[str, np.ndarray]],
    model_path: Path,
    decoder_options: dict,
    output: str | None,
    goal: float,
    layers: list[str],
    deploy: Callable[[list[str]], Path],
    run_program: Callable[[Path, list[dict]], list[dict]],
    dump_layers: Callable[[Path, list[dict]], list[dict[str, np.ndarray]]],
    progress: Callable[[str], None],
    given: list[str] | None = None,
) -> SearchResult:
    """The search of the module doc; with `given`, no search: that keep-list is only measured.
    `layers`: the ONNX nodes that have a TPU-MLIR layer, in order; `deploy(nodes)` builds INT8 keeping
    those in F32 and returns its final.mlir; `run_program` runs one on feeds (outputs by ONNX name);
    `dump_layers` dumps every layer of one on feeds."""
    reference = Runner(model_path.read_bytes(), what="the float model")
    pick = (lambda outs: outs[output]) if output else (lambda outs: next(iter(outs.values())))
    ref = [pick(reference.run(f)) for f in feeds]
    op_of = {node_key(n): n.op_type for n in onnx.load(str(model_path), load_external_data=False).graph.node}
    result = SearchResult(goal, "", len(feeds), layers=len(layers))
    last: list[Path] = []

    def attempt(keep: list[Kept], how_found: str) -> bool:
        """Deploy and measure; whether it reaches the goal."""
        program = deploy([k.node for k in keep])
        last[:] = [program]
        value, result.measure = agreement_of(
            decoder_options, [pick(o) for o in run_program(program, feeds)], ref
        )
        result.steps.append({"kept": len(keep), "how": how_found, "agreement": value})
        progress(f"precision search: {how_found}: {len(keep)} layer(s) in F32: {value:.1%}")
        if value >= goal or not keep:
            result.keep, result.after = keep, value
        return value >= goal

    if given is not None:
        keep = [Kept(node, op_of.get(node, "?"), None) for node in given]
        attempt(keep, "the given keep-list")
        result.keep, result.after = keep, result.steps[-1]["agreement"]
        return result
    if attempt([], "every layer INT8"):
        return result
    # the all-INT8 program just measured, layer by layer
    ranked = rank_layers(dump_layers(last[0], feeds[:RANK_SAMPLES]), feeds[:RANK_SAMPLES], model_path)
    ranked = [k for k in ranked if k.node in set(layers)]
    for k in sorted({min(k, len(ranked)) for k in GREEDY_STEPS} - {0}):
        if attempt(ranked[:k], "the layers losing most on their own"):
            return result
    # Keep one end of the network in float: INT8 error made at the input (Sophgo's LPRNet advice keeps the
    # input layer in float) or built up toward the output. Both ends grow 1, 4, 16, ... layers until one
    # reaches the goal, then that end's length is bisected. The whole network in F32 reads like the float
    # model, so the search always ends.
    nodes = [Kept(node, op_of.get(node, "?"), None) for node in layers]
    total = len(nodes)
    ends = ("first", "last")

    def try_end(end: str, n: int) -> bool:
        kept, span = (
            (nodes[:n], f"1..{n}") if end == "first" else (nodes[total - n :], f"{total - n + 1}..{total}")
        )
        return attempt(kept, f"layers {span} of {total} in F32")

    n, found = 1, None
    while n < total and found is None:
        found = next((end for end in ends if try_end(end, n)), None)
        n *= 4
    lo, hi = n // 16, n // 4  # `found`'s end of length hi reaches the goal, of length lo does not
    if found is None:  # no end shorter than the network does it: bisect the tail up from the whole network
        found, lo, hi = "last", n // 4, total
        if not try_end(found, total):
            result.keep, result.after = nodes, result.steps[-1]["agreement"]  # short even in F32: said so
            return result
    while hi - lo > 1:  # each success sets result.keep; the last one is the shortest
        mid = (lo + hi) // 2
        if try_end(found, mid):
            hi = mid
        else:
            lo = mid
    return result


def nodes_with_layers(mlir: Path, model_path: Path) -> list[str]:
    """The ONNX nodes (names as the keep-list writes them) that have a layer of their own in a Top MLIR,
    in the ONNX graph's order."""
    model = onnx.load(str(model_path), load_external_data=False)
    nodes = [node_key(n) for n in model.graph.node if n.output]
    _, fused = quantize_table(nodes, mlir, model_path)
    fused = set(fused)
    return [n for n in nodes if n not in fused]
