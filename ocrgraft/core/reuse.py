"""Checking a rewritten stage by running only what changed.

A value key names a tensor by how it is computed, not by what it is called: a graph input by its name
and element type, a constant (an initializer or a Constant node) by its contents, a node's output by
its operator, attributes, input keys and position. Two stages' tensors with one key are the same
function of the inputs. So a stage's check runs only the nodes whose outputs no earlier run computed,
fed with the tensors that earlier run kept (the cut); on a large input, where a recognizer's
convolutions are nearly all the time and the passes rewrite its sequence head, that is a small part.
The outputs are the stage's own, checked as before. A graph with subgraphs or local functions gets no
keys, and its stages run whole; so does any case for which a kept tensor is missing.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from ocrgraft.core.errors import OcrgraftError
from ocrgraft.core.runner import Runner

CONST, INPUT, NODE = b"c", b"i", b"n"


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()


class TensorKeys:
    """Content keys of constant tensors, remembered per tensor object: a pass that leaves a weight alone
    costs no second hash of it."""

    def __init__(self):
        self._known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, tensor) -> bytes:
        try:
            return self._known[tensor]
        except (KeyError, TypeError):
            pass
        array = np.asarray(tensor.numpy())
        content = repr(array.tolist()).encode() if array.dtype == object else array.tobytes()
        key = CONST + _digest(str(array.dtype).encode(), repr(array.shape).encode(), content)
        try:
            self._known[tensor] = key
        except TypeError:  # a tensor type without weak references: hashed each time
            pass
        return key


@dataclass
class Layout:
    """One stage's graph, as much as planning its check needs."""

    keys: dict[str, bytes]  # value name -> key
    opaque: set[str]  # values known not to be tensors (sequences, optionals): never a cut
    producer: dict[str, int]  # value name -> index of the node computing it
    node_inputs: list[list[str]]
    node_outputs: list[list[str]]
    outputs: list[str]


def layout(model: ir.Model, tensor_keys: TensorKeys) -> Layout | None:
    """The stage's value keys; None where they cannot be trusted (subgraphs, local functions, unnamed
    values): such a stage runs whole."""
    graph = model.graph
    if model.functions:
        return None
    keys: dict[str, bytes] = {}
    opaque: set[str] = set()
    for name, value in graph.initializers.items():
        if value.const_value is None:
            return None
        keys[name] = tensor_keys(value.const_value)
    for value in graph.inputs:  # after the initializers: an input with a default is fed
        keys[value.name] = INPUT + _digest(value.name.encode(), str(value.type).encode())
    producer: dict[str, int] = {}
    node_inputs, node_outputs = [], []
    for index, node in enumerate(graph):
        inputs = [v.name if v is not None else "" for v in node.inputs]
        outputs = [v.name for v in node.outputs]
        if any(name is None for name in inputs + outputs) or any(n not in keys for n in inputs if n):
            return None
        constant = node.op_type == "Constant" and not node.domain and "value" in node.attributes
        if constant:
            base = tensor_keys(node.attributes["value"].value)  # lifted or not, the same tensor
        else:
            version = str(model.opset_imports.get(node.domain or "", -1)).encode()  # Clip-6 is not Clip-11
            base = _node_key(node, version, [keys[n] if n else b"" for n in inputs], tensor_keys)
            if base is None:
                return None
        for position, value in enumerate(node.outputs):
            if not value.name:
                continue
            keys[value.name] = base if constant else NODE + _digest(base, str(position).encode())
            producer[value.name] = index
            if value.type is not None and not isinstance(value.type, ir.TensorType):
                opaque.add(value.name)
        node_inputs.append(inputs)
        node_outputs.append(outputs)
    outputs = [v.name for v in graph.outputs]
    if any(name not in keys for name in outputs):
        return None
    return Layout(keys, opaque, producer, node_inputs, node_outputs, outputs)


def _node_key(node: ir.Node, version: bytes, inputs: list[bytes], tensor_keys: TensorKeys) -> bytes | None:
    parts = [node.domain.encode(), node.op_type.encode(), (node.overload or "").encode(), version]
    for name in sorted(node.attributes):
        attr = node.attributes[name]
        if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) or attr.is_ref():
            return None
        if attr.type == ir.AttributeType.TENSOR:
            value = tensor_keys(attr.value)
        elif attr.type == ir.AttributeType.TENSORS:
            value = b"".join(tensor_keys(t) for t in attr.value)
        elif attr.type in (ir.AttributeType.SPARSE_TENSOR, ir.AttributeType.SPARSE_TENSORS):
            return None
        else:  # a list attribute as a list, whether a pass wrote it as a tuple or a list
            value = repr(list(attr.value) if isinstance(attr.value, (list, tuple)) else attr.value).encode()
        parts += [name.encode(), str(attr.type).encode(), value]
    return _digest(*parts, b"inputs", *inputs)


@dataclass
class RunPlan:
    """How one stage's check runs: whole (`part` None), or the nodes computing `part` fed with `cut`."""

    part: set[str] | None = None  # output names of the nodes to run
    cut: dict[str, bytes] = field(default_factory=dict)  # input of the part -> key of the kept tensor
    direct: dict[str, bytes] = field(default_factory=dict)  # a graph output an earlier run computed
    keep: dict[str, bytes] = field(default_factory=dict)  # tensor of this run -> key, kept for later
    nodes: int = 0  # the stage's nodes, and how many of them run
    ran: int = 0
    sources: set[int] = field(default_factory=set)  # the runs whose kept tensors this one starts from


def plan(layouts: list[Layout | None]) -> list[RunPlan]:
    """One plan per run, in order: each run computes only what no earlier run did."""
    computed: dict[bytes, tuple[int, str]] = {}  # key -> (run, the tensor's name there)
    plans: list[RunPlan] = []
    for index, lay in enumerate(layouts):
        if lay is None:
            plans.append(RunPlan())
            continue
        run = RunPlan(nodes=len(lay.node_outputs))
        needed: set[int] = set()
        stack, seen = list(lay.outputs), set()
        while stack:
            name = stack.pop()
            if not name or name in seen:
                continue
            seen.add(name)
            key = lay.keys[name]
            if key[:1] == NODE and key in computed:
                run.cut[name] = key
                if name in lay.outputs:
                    run.direct[name] = key
                continue
            node = lay.producer.get(name)
            if node is not None and node not in needed:
                needed.add(node)
                stack.extend(lay.node_inputs[node])
        run.ran = len(needed)
        if run.cut or run.direct:
            run.part = {name for i in needed for name in lay.node_outputs[i] if name}
            for key in run.cut.values():
                source, there = computed[key]
                plans[source].keep[there] = key
                run.sources.add(source)
        for i in needed:
            for name in lay.node_outputs[i]:
                if name and name not in lay.opaque:
                    computed.setdefault(lay.keys[name], (index, name))
        plans.append(run)
    return plans


def whole_with(data: bytes, keep: dict[str, bytes]) -> bytes:
    """The model with the tensors in `keep` as extra outputs (untyped: ONNX Runtime takes its own)."""
    proto = onnx.load_from_string(data)
    have = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=name) for name in keep if name not in have)
    return proto.SerializeToString()


def part_of(data: bytes, run: RunPlan, cut: dict[str, np.ndarray]) -> bytes:
    """The stage's nodes that `run.part` names, fed with the `cut` tensors they read; its outputs are
    the stage's own (but those an earlier run computed) and the tensors to keep."""
    proto = onnx.load_from_string(data)
    graph = proto.graph
    nodes = [n for n in graph.node if any(o in run.part for o in n.output)]
    outputs = [o for o in graph.output if o.name not in run.direct]
    read = {name for n in nodes for name in n.input} | {o.name for o in outputs}
    inputs = [v for v in graph.input if v.name in read and v.name not in cut]
    inputs += [
        onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(array.dtype), None)
        for name, array in cut.items()
        if name in read
    ]
    initializers = [t for t in graph.initializer if t.name in read and t.name not in cut]
    infos = [v for v in graph.value_info if v.name in run.part]
    named = {o.name for o in outputs}
    extra = [onnx.ValueInfoProto(name=name) for name in run.keep if name not in named]
    del graph.node[:], graph.input[:], graph.output[:], graph.initializer[:], graph.value_info[:]
    graph.node.extend(nodes)
    graph.input.extend(inputs)
    graph.initializer.extend(initializers)
    graph.value_info.extend(infos)
    graph.output.extend(outputs + extra)
    return proto.SerializeToString()


class StageRun:
    """Runs one stage's check by its plan: the part when every tensor it starts from was kept for the
    case, else the whole stage; keeps what later runs start from in `kept` (key -> case -> tensor)."""

    def __init__(self, data: bytes, run: RunPlan, lay: Layout | None, kept: dict, what: str):
        self.data, self.plan, self.lay, self.kept, self.what = data, run, lay, kept, what
        self._whole: Runner | None = None
        self._part: Runner | None = None
        self.part_failed: str | None = None  # why the part could not be loaded (then it runs whole)
        self.parts = self.wholes = 0  # cases run each way

    def whole(self) -> Runner:
        if self._whole is None:
            try:
                data = whole_with(self.data, self.plan.keep) if self.plan.keep else self.data
                self._whole = Runner(data, self.what)
            except OcrgraftError:
                if not self.plan.keep:
                    raise
                self.plan.keep = {}  # kept tensors as outputs refused: later checks run whole instead
                self._whole = Runner(self.data, self.what)
        return self._whole

    def _startable(self, title: str) -> bool:
        """Whether this case can run the part: every tensor it starts from was kept."""
        run = self.plan
        return (
            run.part is not None
            and not self.part_failed
            and all(title in self.kept.get(key, {}) for key in run.cut.values())
        )

    def __call__(self, title: str, feeds: dict) -> dict:
        """The stage's outputs for one case."""
        if self._startable(title):
            outs = self._run_part(title, feeds)
        else:
            outs = self.whole().run(feeds)
            self.wholes += 1
        for name, key in self.plan.keep.items():
            if name in outs:
                self.kept.setdefault(key, {})[title] = outs[name]
        names = self.lay.outputs if self.lay else self.whole().output_names
        return {name: outs[name] for name in names}

    def _run_part(self, title: str, feeds: dict) -> dict:
        run = self.plan
        outs = {name: self.kept[key][title] for name, key in run.direct.items()}
        if run.ran or any(name not in outs for name in self.lay.outputs):
            cut = {name: self.kept[key][title] for name, key in run.cut.items()}
            if self._part is None:
                try:
                    self._part = Runner(part_of(self.data, run, cut), self.what)
                except Exception as exc:  # e.g. a kept value that is no tensor: the whole stage still runs
                    self.part_failed = str(exc)
                    self.wholes += 1
                    return self.whole().run(feeds)
            given = {**feeds, **cut}
            outs.update(self._part.run({name: given[name] for name in self._part.input_names}))
        self.parts += 1
        return outs
