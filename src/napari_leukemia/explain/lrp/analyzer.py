"""The LRP analyzer: one compiled `tf.function` per model and composite.

The forward pass stores every op's output; relevance then walks the ops in reverse:

- linear ops apply their rule with the gradient trick (`propagate_linear`);
- dropout passes relevance unchanged;
- activations, and routing ops (max pooling, flatten, padding, concatenation), send it
  back the way their gradient does (the vector-Jacobian product), as Zennit does for
  layers without a rule: unchanged through active ReLU units, winner-take-all through
  max pooling, and dropped at saturated units (ReLU6 above 6), whose output does not
  depend on their input;
- a tensor read by several ops (residual branches) sums the relevance they return.

Relevance starts as the target's pre-softmax logit (Bach et al. 2015).

LRP-0 in every layer of a network whose activations satisfy a(z) = z·a'(z) (ReLU,
leaky ReLU, linear) is Gradient × Input, exactly (Ancona et al. 2018): by induction
every tensor's relevance is its value times the score's gradient there. Such models get
that one gradient instead of the rule walk (`gradient_form`).
"""

from __future__ import annotations

from ...model.backend import tensorflow_module
from ..gradients import input_gradient
from ..graph import (
    ACTIVATION,
    IDENTITY,
    LINEAR,
    NONNEGATIVE_ACTIVATIONS,
    OPAQUE,
    PASS_ACTIVATIONS,
    ROUTE,
    TARGETS_SPEC,
    Graph,
    UnsupportedLayerError,
    compile_function,
    input_signature,
    resolve_target,
)
from .composites import Composite
from .rules import Rule, Term

tf = tensorflow_module()


def stabilize(z, epsilon: float):
    """``z + ε·sign(z)`` with sign(0) = +1 (Zennit's convention).

    Written as one addition of a selected scalar (z − ε is z + (−ε) exactly), so a batch
    makes one full-size temporary instead of two.
    """
    eps = tf.constant(epsilon, z.dtype)
    return z + tf.where(z >= 0, eps, -eps)


def unsupported_ops(graph: Graph) -> list[tuple[str, str, str]]:
    """(name, type, why) of every op LRP cannot propagate through."""
    problems = []
    for op in graph.ops:
        if op.kind == OPAQUE:
            problems.append((op.name, op.type, op.reason or "no LRP rule for this layer type"))
        elif op.kind == ACTIVATION and op.activation not in PASS_ACTIVATIONS:
            problems.append(
                (
                    op.name,
                    op.type,
                    f"activation {op.activation!r} inside the network; LRP "
                    "passes relevance only through ReLU-like activations",
                )
            )
    return problems


#: Activations with a(z) = z·a'(z), through which LRP-0 relevance stays value × gradient.
HOMOGENEOUS_ACTIVATIONS = frozenset({"relu", "leaky_relu", "linear"})


def gradient_form(graph: Graph, rules) -> bool:
    """True when LRP with `rules` (one per linear op) equals Gradient × Input on `graph`:
    every linear op has LRP-0 and every activation is homogeneous (max pooling, padding
    and reshaping send relevance back as their gradient does anyway)."""
    activations = {op.activation for op in graph.ops if op.kind == ACTIVATION}
    return all(rule.is_lrp0 for rule in rules) and activations <= HOMOGENEOUS_ACTIVATIONS


def check_supported(graph: Graph, method: str = "LRP") -> None:
    problems = unsupported_ops(graph)
    if problems:
        listed = "; ".join(f"{name!r} ({kind}): {why}" for name, kind, why in problems)
        raise UnsupportedLayerError(
            f"{method} cannot explain the model {graph.name!r}: {listed}. Gradient, "
            "Integrated Gradients, SmoothGrad, Grad-CAM and occlusion work on any "
            "differentiable model.",
            problems,
        )


def _input_domain(graph: Graph) -> set:
    """Keys of tensors that are the input, up to padding / reshaping / dropout."""
    domain = {graph.input}
    for op in graph.ops:
        if op.kind in (ROUTE, IDENTITY) and all(k in domain for k in op.inputs):
            domain.add(op.output)
    return domain


def _nonnegative(graph: Graph) -> dict:
    """Which tensors are known to be >= 0 (after ReLU, pooled or summed ReLU outputs)."""
    nonneg = {graph.input: False}
    for op in graph.ops:
        ins = all(nonneg.get(k, False) for k in op.inputs)
        if op.kind == ACTIVATION:
            nonneg[op.output] = op.activation in NONNEGATIVE_ACTIVATIONS
        elif op.kind in (IDENTITY, ROUTE) or (op.kind == LINEAR and op.linear.weightless):
            nonneg[op.output] = ins
        else:
            nonneg[op.output] = False
    return nonneg


def _modify_weights(name: str, kernel):
    if kernel is None:
        return None
    if name == "w+":
        return tf.nn.relu(kernel)
    if name == "w-":
        return tf.minimum(kernel, 0.0)
    return kernel


def _effective_terms(rule_terms, weightless: bool, nonneg: bool, has_bias: bool):
    """Drop terms that are zero for this op; simplify modifiers that change nothing."""
    terms = []
    for term in rule_terms:
        if weightless and term.weights == "w-":
            continue  # weight-free ops have only non-negative weights
        if nonneg and term.input == "x-":
            continue
        inp = "x" if (nonneg and term.input == "x+") else term.input
        weights = "w" if (weightless and term.weights == "w+") else term.weights
        bias = term.bias and has_bias
        terms.append(Term(inp, weights, bias, term.sign))
    return terms


#: How a rule term modifies the layer's inputs (Zennit's input modifiers).
_INPUT_FORMS = {
    "x": tf.identity,
    "x+": tf.nn.relu,
    "x-": lambda x: tf.minimum(x, 0.0),
}


def _term_inputs(term, xs, bounds, op, rule):
    """The (watched) input tensors of one term: modified inputs, or the zᴮ bounds."""
    if term.input in ("low", "high"):
        if bounds is None:
            raise ValueError(f"{rule.name} needs input bounds at {op.name!r}.")
        return [tf.identity(b[0] if term.input == "low" else b[1]) for b in bounds]
    return [_INPUT_FORMS[term.input](x) for x in xs]


def _denominator(terms, outputs, z, linear, bias):
    """Σ sign·z_term (+ modified biases): the forward value when the rule is plain LRP-0."""
    first = terms[0]
    plain = len(terms) == 1 and first.input == "x" and first.weights == "w"
    if plain and first.sign == 1.0 and (first.bias or bias is None):
        return z  # the forward pass already computed it
    denominator = tf.add_n([t.sign * o for t, o in zip(terms, outputs, strict=True)])
    biased = [t.sign * _modify_weights(t.weights, bias) for t in terms if t.bias]
    return linear.add_bias(denominator, tf.add_n(biased)) if biased else denominator


def _add(total, part):
    return part if total is None else total + part


def _reads_forward(terms, bias) -> bool:
    """True when a rule's only term is the op itself (LRP-0 / LRP-ε): its denominator is
    the forward output and its gradient that of the forward op."""
    first = terms[0]
    return (
        len(terms) == 1
        and (first.input, first.weights, first.sign) == ("x", "w", 1.0)
        and (first.bias or bias is None)
    )


def propagate_linear(op, xs, z, relevance, rule: Rule, nonneg: bool, bounds=None, forward=None):
    """Relevance of each input of a linear op under `rule` (the gradient trick).

    `forward`: the tape that recorded the forward pass. A rule that reads the forward op
    alone takes its gradient from there instead of running the op again.
    """
    linear = op.linear
    kernel, bias = linear.params()
    contributions = [None] * len(xs)
    for group in rule.groups:
        terms = _effective_terms(group.terms, linear.weightless, nonneg, bias is not None)
        if group.weight == 0 or not terms:
            continue
        if forward is not None and _reads_forward(terms, bias):
            weighted = relevance if group.weight == 1.0 else group.weight * relevance
            scaled = weighted / stabilize(z, rule.epsilon)
            grads = forward.gradient(z, xs, output_gradients=scaled)
            for j, (value, grad) in enumerate(zip(xs, grads, strict=True)):
                if grad is not None:
                    contributions[j] = _add(contributions[j], value * grad)
            continue
        inputs = [_term_inputs(term, xs, bounds, op, rule) for term in terms]
        kernels = [_modify_weights(t.weights, kernel) for t in terms]
        sources = [value for group_inputs in inputs for value in group_inputs]
        with tf.GradientTape() as tape:
            for value in sources:
                tape.watch(value)
            outputs = [linear.apply(i, k) for i, k in zip(inputs, kernels, strict=True)]
        denominator = _denominator(terms, outputs, z, linear, bias)
        weighted = relevance if group.weight == 1.0 else group.weight * relevance
        scaled = weighted / stabilize(denominator, rule.epsilon)
        grads = iter(tape.gradient(outputs, sources, output_gradients=[scaled] * len(outputs)))
        for term, group_inputs in zip(terms, inputs, strict=True):
            for j, value in enumerate(group_inputs):
                grad = next(grads)
                if grad is not None:
                    part = value * grad if term.sign == 1.0 else term.sign * value * grad
                    contributions[j] = _add(contributions[j], part)
    return contributions


def route(op, xs, relevance, y=None, forward=None):
    """Send relevance back the way values came (vector-Jacobian product); from the
    tape of the forward pass when given (`y`: the op's recorded output)."""
    if forward is not None:
        return forward.gradient(y, xs, output_gradients=relevance)
    with tf.GradientTape() as tape:
        for x in xs:
            tape.watch(x)
        y = op.forward(xs)
    return tape.gradient(y, xs, output_gradients=relevance)


class LRPAnalyzer:
    """Compiled LRP for one model graph (BatchNorm already folded) and one composite.

    Call with a batch ``x`` (N, rows, cols, channels), ``target`` (N,) int32 (-1 for the
    predicted class) and the input bounds ``low``, ``high`` (used by the zᴮ rule only).
    Returns (relevance shaped like x, logits (N, classes), target (N,)).
    """

    def __init__(
        self, graph: Graph, composite: Composite, method: str = "LRP", shortcut: bool = True
    ):
        check_supported(graph, method)
        self.graph, self.composite = graph, composite
        domain = _input_domain(graph)
        self._domain = domain
        self._nonneg = _nonnegative(graph)
        self._rules = {}
        for op in graph.ops:
            if op.kind == LINEAR:
                first = any(k in domain for k in op.inputs)
                self._rules[id(op)] = composite.rule(op, first)
        # shortcut=False keeps the rule walk (tests check the walk against the identity)
        self.gradient_form = shortcut and gradient_form(graph, self._rules.values())
        self._fn = compile_function(
            self._gradient_x_input if self.gradient_form else self._analyze,
            [
                input_signature(graph),
                TARGETS_SPEC,
                tf.TensorSpec((), tf.float32),
                tf.TensorSpec((), tf.float32),
            ],
        )

    def __call__(self, x, target, low=0.0, high=1.0):
        return self._fn(x, target, low, high)

    def _gradient_x_input(self, x, target, low, high):
        """LRP-0 on a network of homogeneous activations: x ⊙ ∂logit/∂x (module doc)."""
        gradient, logits, target = input_gradient(self.graph, x, target, folded=True)
        return x * gradient, logits, target

    def _analyze(self, x, target, low, high):
        graph = self.graph
        with tf.GradientTape(persistent=True) as tape:  # recorded once, reused below
            tape.watch(x)
            values = graph.run(x, linear_forward=True)
        logits = values[graph.output]
        target = resolve_target(logits, target)
        relevance = {graph.output: tf.one_hot(target, tf.shape(logits)[-1]) * logits}
        bounds = {}
        if self.composite.needs_bounds:
            bounds[graph.input] = (tf.zeros_like(x) + low, tf.zeros_like(x) + high)
            for op in graph.ops:
                if op.output in self._domain and op.output != graph.input:
                    bounds[op.output] = (
                        op.forward([bounds[k][0] for k in op.inputs]),
                        op.forward([bounds[k][1] for k in op.inputs]),
                    )
        for op in reversed(graph.ops):
            r = relevance.pop(op.output, None)
            if r is None:
                continue
            xs = [values[k] for k in op.inputs]
            # the recorded pass gives d output / d input only for one-input ops: with
            # more (residual sums), an input's gradient would also flow through another
            forward = tape if len(xs) == 1 else None
            if op.kind == LINEAR:
                rule = self._rules[id(op)]
                nonneg = all(self._nonneg.get(k, False) for k in op.inputs)
                op_bounds = None
                if rule.needs_bounds and all(k in bounds for k in op.inputs):
                    op_bounds = [bounds[k] for k in op.inputs]
                parts = propagate_linear(
                    op, xs, values[op.output], r, rule, nonneg, op_bounds, forward
                )
            elif op.kind == IDENTITY:
                parts = [r]
            else:  # ROUTE and ACTIVATION: the vector-Jacobian product
                parts = route(op, xs, r, values[op.output], forward)
            for key, part in zip(op.inputs, parts, strict=True):
                if part is None:
                    continue
                relevance[key] = relevance[key] + part if key in relevance else part
        result = relevance.get(graph.input)
        if result is None:
            result = tf.zeros_like(x)
        return result, logits, target
