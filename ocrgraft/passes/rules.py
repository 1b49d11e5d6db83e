"""Passes written as onnxscript rewrite rules: a pattern function, a replacement function and a
check that says, in words, why a match was refused.

A `RulePass` wraps one rule family in ocrgraft's Pass contract (name, docstring, semantics, rewrite
count, rewritten nodes tagged). Asked to explain (`ocrgraft apply --explain`), it traces the matcher
and lists, per node where a pattern began to match, the condition that failed.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import onnx_ir as ir
from onnx_ir import convenience
from onnxscript import optimizer
from onnxscript.rewriter import _basics, _pattern_ir, pattern
from onnxscript.rewriter._basics import MatchResult

from ocrgraft.core.graph import all_nodes
from ocrgraft.passes._edit import ints, pool_indices_unused, pool_window, remove_unused_values
from ocrgraft.passes.base import Pass


class _NearMisses(_basics.MatchingTracer):
    """Keeps every refused match that got somewhere (a node matched, or the check ran), one per root
    node, the furthest; onnxscript's own tracer keeps only the best match of each rule."""

    def __init__(self) -> None:
        super().__init__()
        self.misses: dict[int, tuple[int, str, ir.Node, _basics.MatchInfo]] = {}

    def log(self, rule, container, node, match_result, status) -> None:
        if status == _basics.MatchStatus.SUCCESS:
            self.misses.pop(id(node), None)
            return
        info = _basics.MatchInfo(match_result, node, container, status)
        if not match_result.nodes and status == _basics.MatchStatus.NO_MATCH:
            return
        if status == _basics.MatchStatus.CONDITION_FAILED and not match_result.reason:
            return  # Rule.done: already in the rewritten form
        best = self.misses.get(id(node))
        if best is None or info.score() > best[0]:
            self.misses[id(node)] = (info.score(), rule.name or type(rule).__name__, node, info)


def describe_miss(rule_name: str, node: ir.Node, info: _basics.MatchInfo) -> str:
    """One line: the node, the condition that failed in words, and the rule."""
    reason = info.match_result.reason or "the pattern did not match"
    matched = list(info.match_result.nodes)
    if reason.startswith("Matched nodes have other uses"):  # name the value and its other reader
        inside = set(map(id, matched))
        for other in matched:
            if other is node:
                continue
            for out in other.outputs:
                readers = [u.node for u in out.uses() if id(u.node) not in inside]
                if readers or out.is_graph_output():
                    by = f"{readers[0].op_type} '{readers[0].name or '?'}'" if readers else "a graph output"
                    reason = (
                        f"the output '{out.name}' of {other.op_type} '{other.name or '?'}' is also read "
                        f"by {by}, so it cannot be folded away"
                    )
                    break
    what = "condition failed" if info.status == _basics.MatchStatus.CONDITION_FAILED else "no match"
    return f"{node.op_type} at node '{node.name or '?'}': {reason} ({rule_name}: {what})"


class Rule(pattern.RewriteRuleClassBase):
    """A rule of a RulePass. A successful check hands `replaced(...)` the values only the matched nodes
    may read (their constants), which the pass removes with their producers once nothing reads them."""

    def __init__(self, orphans: list[ir.Value] | None = None):
        super().__init__()
        self.orphans = orphans if orphans is not None else []

    def done(self, result: MatchResult) -> MatchResult:
        """Fail without a reason: the node is already in the rewritten form, nothing to explain."""
        return result.fail("")

    def replaced(self, *values: ir.Value | None) -> None:
        self.orphans.extend(v for v in values if v is not None)


class RulePass(Pass):
    """A pass made of onnxscript rewrite rules. Subclasses list rule classes in `rules`, set `commute`
    when Add / Mul patterns should match with their inputs either way round, and `needs_shapes` (the
    Pass contract) when the checks read value shapes."""

    rules: ClassVar[tuple[type[Rule], ...]] = ()
    commute: ClassVar[bool] = False

    def rewrite(self, model: ir.Model) -> int:
        orphans: list[ir.Value] = []
        rules = pattern.RewriteRuleSet([cls.rule(orphans) for cls in self.rules], commute=self.commute).rules
        by_root: dict[str, list] = {}
        for rule in rules:  # a rule is tried only where its pattern's last op is
            by_root.setdefault(rule._target_pattern.output_node.op_type, []).append((rule, _producers(rule)))
        if self.explain:  # a traced run only looks; the real run follows
            tracer = _NearMisses()
            _apply(model, by_root, tracer)
            self.misses = [describe_miss(name, node, info) for _, name, node, info in tracer.misses.values()]
            orphans.clear()
        count = _apply(model, by_root, None)
        if count:
            remove_unused_values(model.graph, list({id(v): v for v in orphans}.values()))
        return count


def _apply(model: ir.Model, by_root: dict[str, list], tracer) -> int:
    """onnxscript's RewriteRuleSet loop, tried only at nodes whose op type ends a pattern: on an
    export of tens of thousands of nodes, matching every rule at every node would cost more than the
    rewrites. With a tracer nothing is replaced (onnxscript's convention)."""
    count = 0
    for node in all_nodes(model):
        graph = node.graph
        for rule, producers in by_root.get(node.op_type, ()) if node.graph is not None else ():
            if tracer is None and not _may_match(producers, node):  # a traced run explains every try
                continue
            delta = rule.try_rewrite(model, graph, node, tracer=tracer)
            if delta is None:
                continue
            if tracer is not None:  # a traced run only looks; the node is rewritten, nothing to explain
                break
            for init in delta.new_initializers:
                graph.initializers.setdefault(init.name, init)
            optimizer.basic_constant_propagation(delta.new_nodes)
            convenience.replace_nodes_and_values(
                graph, node, delta.match.nodes, delta.new_nodes, delta.match.outputs, delta.new_outputs
            )
            count += 1
            break
    return count


def _producers(rule) -> list[tuple[int, _pattern_ir.StringPattern]]:
    """(input index, op pattern) for each input of the rule's root that the pattern has computed by an op."""
    return [
        (i, p.producer().op)
        for i, p in enumerate(rule._target_pattern.output_node.inputs)
        if isinstance(p, _pattern_ir.NodeOutputPattern)
    ]


def _may_match(producers: list[tuple[int, _pattern_ir.StringPattern]], node: ir.Node) -> bool:
    """A quick look before the matcher: each input that the pattern has computed by an op (Conv for
    fuse-conv-affine's rules) is computed by such an op here. Most nodes of a rule's root type (the Adds
    of residual blocks) fail this, and the full matcher costs tens of microseconds per try."""
    inputs = node.inputs
    for i, op in producers:
        producer = inputs[i].producer() if i < len(inputs) and inputs[i] is not None else None
        if producer is None or not op.matches(producer.op_type):
            return False
    return True


# -- for rules that rewrite a node to one of its inputs, or read shapes ----------------------------------


class WiresThrough(RulePass):
    """A RulePass whose rules may rewrite a node to its input itself: they return `op.Identity(x)`, and
    the Identity nodes the run made are then removed as `Editor.replace` would, x taking the node's
    place (and, for a graph output, its name). An Identity stays only where the output is a graph
    output and x a graph input, initializer, another output or an outer-scope value, which cannot be
    renamed. (Returning x itself would have the rewriter give x the replaced value's name.)"""

    def rewrite(self, model: ir.Model) -> int:
        before = all_nodes(model)  # held, so a new node cannot reuse a removed one's id
        count = super().rewrite(model)
        if count:
            seen = set(map(id, before))
            for node in all_nodes(model):
                if id(node) not in seen and node.op_type == "Identity" and not node.domain:
                    wire_through(node)
        return count


def wire_through(node: ir.Node) -> bool:
    """Replace a one-in one-out node's output by its input and remove it; False (and nothing done) where
    its output is a graph output that its input cannot stand in for (an input, initializer, another
    output or an outer-scope value)."""
    x, y, graph = node.inputs[0], node.outputs[0], node.graph
    output = y.is_graph_output()
    if output and (x.is_graph_output() or x.producer() is None or x.producer().graph is not graph):
        return False
    y.replace_all_uses_with(x, replace_graph_outputs=True)
    if output:  # the graph's interface keeps its name and declared type
        x.name = y.name
        x.type = x.type if x.type is not None else y.type
        x.shape = x.shape if x.shape is not None else y.shape
    graph.remove(node, safe=True)
    return True


class PoolRule(Rule):
    """A rule rooted at one pool op (`op_type`, AveragePool or MaxPool); `window` reads its window or says
    why it cannot."""

    op_type: ClassVar[str]

    def pattern(self, op, x):
        return getattr(op, self.op_type)(x, _allow_other_attributes=True, _outputs=["pooled"])

    @staticmethod
    def window(node: ir.Node, rank: int) -> tuple[tuple | None, str]:
        """`pool_window(node, rank)` and "", or None and the reason: its Indices output is read, it pads
        with auto_pad SAME_*, or its kernel has another rank."""
        if not pool_indices_unused(node):
            return None, f"its Indices output '{node.outputs[1].name}' is read"
        win = pool_window(node, rank)
        if win is not None:
            return win, ""
        kernel = ints(node, "kernel_shape")
        if kernel is None or len(kernel) != rank:
            return None, f"its kernel_shape {kernel} does not fit {rank} spatial axes"
        return None, f"it pads with auto_pad {node.attributes.get_string('auto_pad')}"


def fresh_initializer(op, graph: ir.Graph, hint: str, array: np.ndarray) -> ir.Value:
    """A new initializer for a rewrite, named after `hint` and unlike any initializer of the graph (the
    rewriter keeps an existing initializer of the same name)."""
    name, i = hint, 1
    while name in graph.initializers:
        name, i = f"{hint}_{i}", i + 1
    return op.initializer(ir.Tensor(array, name=name), name)


def in_main_graph(context) -> bool:
    """Whether the match is in the main graph: only its shapes are inferred afresh for a pass, so a rule
    that reads shapes rewrites nothing in an If / Loop body."""
    return context.graph_or_function is context.model.graph
