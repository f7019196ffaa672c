"""Walk a Keras model into an ordered list of ops that explainers can run and reverse.

`build_graph` turns a Sequential or functional Keras 3 model (nested models are inlined)
into a `Graph`: ops in topological order, each reading tensors by key and writing one.
Fused activations (``Conv2D(activation="relu")``) become their own op, and the final
softmax / sigmoid is stripped so the graph's output is the pre-activation logits.

Each op has a *kind* that says how relevance passes through it backwards:

- ``linear``: affine in its inputs (Conv, DepthwiseConv, SeparableConv halves, Dense,
  BatchNormalization, Rescaling; and the weight-free averaging ops AveragePooling,
  GlobalAveragePooling, UpSampling, Add, Average). LRP rules apply here. Its `linear`
  attribute knows the parameters and how to apply the op with modified ones.
- ``activation``: element-wise non-linearity; for ReLU-like ones relevance passes the
  way the gradient does (unchanged through active units; Zennit's convention).
- ``identity``: Dropout and friends (identity at inference).
- ``route``: moves values without weighting them (MaxPooling, Flatten, Reshape,
  ZeroPadding, Cropping, Concatenate, Permute); relevance is routed back the same way
  (the vector-Jacobian product, i.e. winner-take-all for max pooling).
- ``opaque``: anything else. Gradient methods and CAMs still work (the layer is simply
  called); LRP raises `UnsupportedLayerError` naming it.

This module imports TensorFlow; import it only when a model is explained.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model.backend import keras_module, tensorflow_module
from .methods import ExplainError

tf = tensorflow_module()

LINEAR, ACTIVATION, IDENTITY, ROUTE, OPAQUE = "linear", "activation", "identity", "route", "opaque"

#: Activations LRP passes relevance through (ReLU-like), by their gradient.
PASS_ACTIVATIONS = frozenset(
    {"relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "softplus", "linear"}
)

#: Activations whose output is never negative.
NONNEGATIVE_ACTIVATIONS = frozenset({"relu", "relu6", "softplus"})
#: Output activations removed so the graph ends at the pre-activation scores.
OUTPUT_ACTIVATIONS = frozenset({"softmax", "sigmoid", "log_softmax"})


class UnsupportedLayerError(ExplainError):
    """The model has layers a method cannot explain; `layers` lists (name, type, why)."""

    def __init__(self, message: str, layers: list[tuple[str, str, str]]):
        super().__init__(message)
        self.layers = layers


class Compiled:
    """A bound method compiled once with `tf.function`, then called without dispatch.

    It is traced on the first call (one input signature, so never again) and then
    called through its concrete function's flat call (`flat_call`), which skips
    `tf.function`'s per-call dispatch and the structured-signature binding (together
    about 0.3 ms, a tenth of a small model's map; the binding checks no shapes in eager
    mode, so nothing is lost). NumPy arrays of the signature's dtype become tensors
    without a cast. A `functools.partial` gives every analyzer its own tracing statistics
    (TensorFlow keys them by code object) and AutoGraph is off: the code has no
    tensor-dependent Python control flow.
    """

    def __init__(self, method, input_signature):
        self.function = tf.function(
            functools.partial(method), input_signature=input_signature, autograph=False
        )
        self.signature = input_signature
        self._dtypes = [(spec.dtype, spec.dtype.as_numpy_dtype) for spec in input_signature]
        self._call = None

    def __call__(self, *args):
        if self._call is None:
            self._call = flat_call(self.function.get_concrete_function())
        return self._call(
            [_tensor(a, *dtypes) for a, dtypes in zip(args, self._dtypes, strict=True)]
        )

    def experimental_get_tracing_count(self) -> int:
        return self.function.experimental_get_tracing_count()


def flat_call(concrete):
    """A call of the concrete function `concrete` on a list of tensors in signature order.

    Compatibility helper around TensorFlow's private ``ConcreteFunction._call_flat``
    (what its public call runs after binding the arguments; GradientTape-aware); where
    a TensorFlow version lacks it, the public call.
    """
    call = getattr(concrete, "_call_flat", None)
    if call is None:
        return lambda values: concrete(*values)
    return lambda values: call(values, concrete.captured_inputs)


def _tensor(value, dtype, numpy_dtype):
    """`value` as a tensor of `dtype`: a tensor or NumPy value of that dtype as it is."""
    if isinstance(value, tf.Tensor) and value.dtype == dtype:
        return value
    if isinstance(value, np.ndarray | np.generic) and value.dtype == numpy_dtype:
        return tf.constant(value)
    return tf.convert_to_tensor(value, dtype=dtype)


def compile_function(method, input_signature) -> Compiled:
    """Compile `method` (see `Compiled`)."""
    return Compiled(method, input_signature)


def input_signature(graph) -> tf.TensorSpec:
    """The batch of model inputs every compiled function takes: (None, *input shape)."""
    return tf.TensorSpec((None, *graph.input_shape[1:]), tf.float32)


#: Targets as compiled functions take them: one class index per input, -1 = predicted.
TARGETS_SPEC = tf.TensorSpec((None,), tf.int32)


def resolve_target(logits, target):
    """`target` with -1 replaced by the predicted class (the largest logit)."""
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.where(target < 0, predicted, target)


def target_score(logits, target):
    """Each input's logit of its own target class."""
    return tf.gather(logits, target, axis=1, batch_dims=1)


# --------------------------------------------------------------------------- linear ops
class Linear:
    """An op that is affine in its inputs: ``z = apply(xs, kernel) + bias``.

    `params()` returns the current (kernel, bias) tensors (None when absent); rules
    modify them (e.g. keep the positive part) and call `apply` again. `weightless` ops
    (pooling, sums) have no kernel and only non-negative implicit weights.
    """

    weightless = False
    elementwise = False
    channel_axis = -1

    def params(self):
        raise NotImplementedError

    def apply(self, xs, kernel):
        raise NotImplementedError

    def add_bias(self, z, bias):
        if bias is None:
            return z
        if self.channel_axis in (-1, z.shape.rank - 1):
            return z + bias
        shape = [1] * z.shape.rank
        shape[self.channel_axis] = -1
        return z + tf.reshape(bias, shape)

    def fold_scale(self, kernel, scale):
        """The kernel of this op followed by a per-output-channel multiplication."""
        return kernel * scale

    def forward(self, xs):
        kernel, bias = self.params()
        return self.add_bias(self.apply(xs, kernel), bias)


def _value(variable):
    return tf.convert_to_tensor(getattr(variable, "value", variable))


class LayerLinear(Linear):
    """A weighted Keras layer: its kernel attribute, its bias if it has one."""

    kernel_attr = "kernel"

    def __init__(self, layer, bias: bool = True):
        self.layer, self.has_bias = layer, bias
        data_format = getattr(layer, "data_format", "channels_last")
        self.channel_axis = -1 if data_format == "channels_last" else 1

    def params(self):
        use_bias = self.has_bias and self.layer.use_bias
        bias = _value(self.layer.bias) if use_bias else None
        return _value(getattr(self.layer, self.kernel_attr)), bias


class ConvLinear(LayerLinear):
    """Conv1D/2D/3D (any groups) via the layer's own convolution op."""

    def apply(self, xs, kernel):
        return self.layer.convolution_op(xs[0], kernel)


class DepthwiseLinear(LayerLinear):
    """DepthwiseConv1D/2D; also the first half of a SeparableConv."""

    def __init__(self, layer, kernel_attr="kernel", bias=True):
        super().__init__(layer, bias)
        self.kernel_attr = kernel_attr

    def apply(self, xs, kernel):
        return keras_module().ops.depthwise_conv(
            xs[0],
            kernel,
            strides=self.layer.strides,
            padding=self.layer.padding,
            dilation_rate=self.layer.dilation_rate,
            data_format=self.layer.data_format,
        )

    def fold_scale(self, kernel, scale):
        # kernel (..., in, multiplier); output channel c = i * multiplier + m
        return kernel * tf.reshape(scale, tf.shape(kernel)[-2:])


class PointwiseLinear(LayerLinear):
    """The 1x1 second half of a SeparableConv (stride 1, no padding)."""

    kernel_attr = "pointwise_kernel"

    def apply(self, xs, kernel):
        keras = keras_module()
        return keras.ops.conv(
            xs[0], kernel, strides=1, padding="valid", data_format=self.layer.data_format
        )


class DenseLinear(LayerLinear):
    """Dense: a matrix product over the last axis."""

    def apply(self, xs, kernel):
        x = xs[0]
        if x.shape.rank == 2:
            return tf.matmul(x, kernel)
        return tf.tensordot(x, kernel, axes=[[x.shape.rank - 1], [0]])


class AffineLinear(Linear):
    """Element-wise ``x * scale + shift`` (BatchNormalization at inference, Rescaling)."""

    elementwise = True

    def __init__(self, layer, axis=-1):
        self.layer = layer
        self.channel_axis = axis
        self.batch_norm = isinstance(layer, keras_module().layers.BatchNormalization)

    def params(self):
        layer = self.layer
        if self.batch_norm:
            inv = tf.math.rsqrt(_value(layer.moving_variance) + layer.epsilon)
            scale = inv * _value(layer.gamma) if layer.scale else inv
            shift = -_value(layer.moving_mean) * scale
            if layer.center:
                shift = shift + _value(layer.beta)
            return scale, shift
        # Rescaling: scalar or broadcastable scale and offset
        scale = tf.constant(layer.scale, dtype=tf.float32)
        offset = tf.constant(layer.offset, dtype=tf.float32)
        return scale, offset

    def apply(self, xs, kernel):
        x = xs[0]
        if kernel.shape.rank == 1 and self.channel_axis not in (-1, x.shape.rank - 1):
            shape = [1] * x.shape.rank
            shape[self.channel_axis] = -1
            kernel = tf.reshape(kernel, shape)
        return x * kernel

    def add_bias(self, z, bias):
        if bias is None:
            return z
        if bias.shape.rank == 1 and self.channel_axis not in (-1, z.shape.rank - 1):
            shape = [1] * z.shape.rank
            shape[self.channel_axis] = -1
            bias = tf.reshape(bias, shape)
        return z + bias


class PoolLinear(Linear):
    """Weight-free linear layers with non-negative weights: average pooling, upsampling."""

    weightless = True

    def __init__(self, layer):
        self.layer = layer

    def params(self):
        return None, None

    def apply(self, xs, kernel):
        return self.layer(xs[0])


class SumLinear(Linear):
    """Add (sum of inputs) and Average (mean of inputs)."""

    weightless = True

    def __init__(self, mean=False):
        self.mean = mean

    def params(self):
        return None, None

    def apply(self, xs, kernel):
        total = tf.add_n(list(xs))
        return total / float(len(xs)) if self.mean else total


class FoldedLinear(Linear):
    """A linear op followed by a BatchNormalization, merged into one op (a canonizer)."""

    def __init__(self, base: Linear, norm: AffineLinear):
        self.base, self.norm = base, norm
        self.channel_axis = base.channel_axis

    def params(self):
        kernel, bias = self.base.params()
        scale, shift = self.norm.params()
        bias = shift if bias is None else bias * scale + shift
        return self.base.fold_scale(kernel, scale), bias

    def apply(self, xs, kernel):
        return self.base.apply(xs, kernel)


# ------------------------------------------------------------------------------ the graph
@dataclass(eq=False)
class Op:
    """One step of the graph: ``values[output] = forward([values[k] for k in inputs])``."""

    name: str
    type: str
    kind: str
    inputs: tuple
    output: int
    forward: Any
    linear: Linear | None = None
    activation: str | None = None
    reason: str = ""
    spatial: bool = False  # a convolution (candidate feature map for Grad-CAM)
    collapses: bool = False  # global pooling / flatten / reshape (ends the spatial part)


@dataclass(eq=False)
class Graph:
    """A model as ops in topological order, ending at the pre-activation logits."""

    ops: list[Op]
    input: int
    output: int
    input_shape: tuple
    shapes: dict = field(default_factory=dict)
    stripped: list[str] = field(default_factory=list)
    output_activation: str | None = None
    name: str = ""

    def run(self, x, watch=None, linear_forward=False):
        """Run the ops on `x`; return all values by key.

        watch: optional (key, tape); the tape watches that tensor as soon as it exists.
        linear_forward: compute linear ops from their (possibly folded) parameters, as
        LRP does, instead of calling the Keras layer.
        """
        values = {self.input: x}
        if watch is not None and watch[0] == self.input:
            watch[1].watch(x)
        return self.run_from(values, 0, watch, linear_forward)

    def run_from(self, values: dict, start: int, watch=None, linear_forward=False):
        """Run ``ops[start:]`` on the known `values` (by key); return all values."""
        for op in self.ops[start:]:
            args = [values[k] for k in op.inputs]
            if linear_forward and op.linear is not None:
                out = op.linear.forward(args)
            else:
                out = op.forward(args)
            values[op.output] = out
            if watch is not None and watch[0] == op.output:
                watch[1].watch(out)
        return values

    def producer(self, key):
        for op in self.ops:
            if op.output == key:
                return op
        return None

    def consumers(self) -> dict:
        counts: dict = {}
        for op in self.ops:
            for k in op.inputs:
                counts[k] = counts.get(k, 0) + 1
        return counts

    def find(self, name: str) -> Op | None:
        """The op that produces layer `name`'s output (the last op of a split layer)."""
        found = None
        for op in self.ops:
            if op.name == name or op.name.split("/")[0] == name:
                found = op
        return found


def _functional(model):
    keras = keras_module()
    if isinstance(model, keras.Sequential):
        inner = getattr(model, "_functional", None)
        if inner is None:
            raise ExplainError(
                f"The Sequential model {model.name!r} has no input shape yet; build it "
                "with keras.Input(...) as its first layer or call it on a batch first."
            )
        return inner
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "inputs") and model.inputs:
        return model
    raise ExplainError(
        f"{type(model).__name__} {getattr(model, 'name', '')!r} is a subclassed model; the "
        "attribution engine needs a Sequential or functional Keras model (a graph it can walk)."
    )


def _is_model(operation) -> bool:
    keras = keras_module()
    return isinstance(operation, keras.Model)


def _activation_name(function) -> str:
    name = getattr(function, "__name__", None) or type(function).__name__
    return str(name).lower()


class _Builder:
    def __init__(self):
        self.keys: dict = {}
        self.alias: dict = {}
        self.shapes: dict = {}
        self.ops: list[Op] = []
        self.counter = 0

    def new_key(self, shape=None) -> int:
        self.counter += 1
        if shape is not None:
            self.shapes[self.counter] = shape
        return self.counter

    def key(self, prefix, tensor) -> int:
        raw = (prefix, id(tensor))
        if raw in self.alias:
            return self.alias[raw]
        if raw not in self.keys:
            self.keys[raw] = self.new_key(tuple(tensor.shape))
        return self.keys[raw]

    def walk(self, functional, prefix, input_keys):
        for tensor, key in zip(functional.inputs, input_keys, strict=True):
            self.alias[(prefix, id(tensor))] = key
        depths = sorted(functional._nodes_by_depth, reverse=True)
        for depth in depths:
            for node in functional._nodes_by_depth[depth]:
                operation = node.operation
                if operation is None or node.is_input:
                    continue
                in_keys = [self.key(prefix, t) for t in node.input_tensors]
                if _is_model(operation):
                    inner = _functional(operation)
                    sub = (*prefix, id(node))
                    self.walk(inner, sub, in_keys)
                    for outer, inner_out in zip(node.outputs, inner.outputs, strict=True):
                        self.alias[(prefix, id(outer))] = self.key(sub, inner_out)
                    continue
                if len(node.outputs) != 1:
                    raise UnsupportedLayerError(
                        f"Layer {operation.name!r} ({type(operation).__name__}) has "
                        f"{len(node.outputs)} outputs; the attribution engine handles "
                        "single-output layers only.",
                        [(operation.name, type(operation).__name__, "several outputs")],
                    )
                out_key = self.key(prefix, node.outputs[0])
                self.add(node, operation, in_keys, out_key)

    # ------------------------------------------------------------------ classification
    def add(self, node, layer, in_keys, out_key):
        """Translate one Keras layer call into ops: the first matching table row wins."""
        site = _Site(self, layer, tuple(in_keys), out_key, _plain_forward(node, layer))
        for layer_types, translate in _layer_table():
            if isinstance(layer, layer_types):
                translate(site)
                return
        site.op(OPAQUE, reason="no LRP rule for this layer type")


@dataclass
class _Site:
    """One layer call being translated: where its ops go and how to make them."""

    builder: _Builder
    layer: Any
    inputs: tuple
    output: Any
    plain: Any

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def type_name(self) -> str:
        return type(self.layer).__name__

    def op(self, kind, **kw):
        """One op computing the layer as Keras does (the plain forward)."""
        self.builder.ops.append(
            Op(self.name, self.type_name, kind, self.inputs, self.output, self.plain, **kw)
        )

    def linear(self, linear, inputs=None, output=None, name=None, **kw):
        """A linear op computed from `linear`'s (possibly folded) parameters."""
        self.builder.ops.append(
            Op(
                name or self.name,
                self.type_name,
                LINEAR,
                self.inputs if inputs is None else tuple(inputs),
                self.output if output is None else output,
                _linear_forward(linear),
                linear=linear,
                **kw,
            )
        )

    def linear_then_activation(self, linear, inputs=None, **kw):
        """A conv/dense layer: its linear part, then its fused activation as its own op."""
        activation = getattr(self.layer, "activation", None)
        act = _activation_name(activation) if activation is not None else "linear"
        if act == "linear":
            self.linear(linear, inputs, **kw)
            return
        mid = self.builder.new_key(self.builder.shapes.get(self.output))
        self.linear(linear, inputs, output=mid, **kw)
        self.builder.ops.append(
            Op(
                f"{self.name}/activation",
                self.type_name,
                ACTIVATION,
                (mid,),
                self.output,
                _activation_forward(activation),
                activation=act,
            )
        )


def _separable(site: _Site) -> None:
    depthwise = DepthwiseLinear(site.layer, "depthwise_kernel", bias=False)
    mid = site.builder.new_key()
    site.linear(depthwise, output=mid, name=f"{site.name}/depthwise", spatial=True)
    site.linear_then_activation(PointwiseLinear(site.layer), inputs=[mid], spatial=True)


def _batch_norm(site: _Site) -> None:
    axis = site.layer.axis
    if isinstance(axis, list | tuple):
        if len(axis) != 1:
            site.op(OPAQUE, reason="batch normalization over several axes")
            return
        axis = axis[0]
    shape = site.builder.shapes.get(site.output)
    if shape is not None and axis == len(shape) - 1:
        axis = -1
    site.op(LINEAR, linear=AffineLinear(site.layer, axis))


def _relu(site: _Site) -> None:
    slope = float(getattr(site.layer, "negative_slope", 0.0) or 0.0)
    site.op(ACTIVATION, activation="relu" if slope == 0 else "leaky_relu")


def _named(kind, **kw):
    """A translator that adds one plain op of `kind`."""
    return lambda site: site.op(kind, **kw)


@functools.cache
def _layer_table() -> tuple:
    """(Keras layer types, translator) rows, checked in order (Zennit's layer map)."""
    L = keras_module().layers

    def types(*names):
        return tuple(getattr(L, n) for n in names if hasattr(L, n))

    def dims(stem, ds=(1, 2, 3)):
        return types(*(stem.format(d) for d in ds))

    return (
        (
            dims("Conv{}DTranspose"),
            _named(OPAQUE, reason="transposed convolutions have no LRP rule here"),
        ),
        (dims("Conv{}D"), lambda s: s.linear_then_activation(ConvLinear(s.layer), spatial=True)),
        (
            dims("DepthwiseConv{}D", (1, 2)),
            lambda s: s.linear_then_activation(DepthwiseLinear(s.layer), spatial=True),
        ),
        (dims("SeparableConv{}D", (1, 2)), _separable),
        (types("Dense"), lambda s: s.linear_then_activation(DenseLinear(s.layer))),
        (types("BatchNormalization"), _batch_norm),
        (types("Rescaling"), lambda s: s.op(LINEAR, linear=AffineLinear(s.layer, -1))),
        (
            types("Activation"),
            lambda s: s.op(ACTIVATION, activation=_activation_name(s.layer.activation)),
        ),
        (types("ReLU"), _relu),
        (types("LeakyReLU"), _named(ACTIVATION, activation="leaky_relu")),
        (types("ELU"), _named(ACTIVATION, activation="elu")),
        (types("Softmax"), _named(ACTIVATION, activation="softmax")),
        (
            types("Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout")
            + dims("SpatialDropout{}D")
            + types("ActivityRegularization", "Identity"),
            _named(IDENTITY),
        ),
        (dims("MaxPooling{}D"), _named(ROUTE)),
        (dims("GlobalMaxPooling{}D"), _named(ROUTE, collapses=True)),
        (
            dims("AveragePooling{}D") + dims("UpSampling{}D"),
            lambda s: s.op(LINEAR, linear=PoolLinear(s.layer)),
        ),
        (
            dims("GlobalAveragePooling{}D"),
            lambda s: s.op(LINEAR, linear=PoolLinear(s.layer), collapses=True),
        ),
        (types("Flatten", "Reshape"), _named(ROUTE, collapses=True)),
        (
            types("Permute", "Concatenate", "RepeatVector")
            + dims("ZeroPadding{}D")
            + dims("Cropping{}D"),
            _named(ROUTE),
        ),
        (types("Add"), lambda s: s.op(LINEAR, linear=SumLinear())),
        (types("Average"), lambda s: s.op(LINEAR, linear=SumLinear(mean=True))),
    )


def _plain_forward(node, operation):
    """Call the layer exactly as the model does (inference mode)."""
    tensors = list(node.input_tensors)
    is_layer = hasattr(operation, "_call_has_training_arg")
    takes_training = bool(getattr(operation, "_call_has_training_arg", False))

    def forward(values):
        args, kwargs = node.arguments.fill_in(
            {id(t): v for t, v in zip(tensors, values, strict=True)}
        )
        if is_layer and takes_training:
            kwargs = {**kwargs, "training": False}
        return operation(*args, **kwargs)

    return forward


def _linear_forward(linear):
    return lambda values: linear.forward(values)


def _activation_forward(function):
    return lambda values: function(values[0])


def build_graph(model) -> Graph:
    """Walk `model` (Sequential or functional; nested models inlined) into a `Graph`."""
    functional = _functional(model)
    if len(functional.inputs) != 1 or len(functional.outputs) != 1:
        raise ExplainError(
            f"The model {model.name!r} has {len(functional.inputs)} inputs and "
            f"{len(functional.outputs)} outputs; explanations need one image input and one "
            "class-score output."
        )
    builder = _Builder()
    input_key = builder.key((), functional.inputs[0])
    builder.walk(functional, (), [input_key])
    output_key = builder.key((), functional.outputs[0])
    ops = builder.ops
    stripped, output_activation = [], None
    while ops and ops[-1].output == output_key and ops[-1].kind in (ACTIVATION, IDENTITY):
        last = ops[-1]
        if last.kind == ACTIVATION:
            if last.activation not in OUTPUT_ACTIVATIONS | {"linear"}:
                break
            if output_activation is None and last.activation != "linear":
                output_activation = last.activation
        stripped.append(f"{last.name} ({last.activation or last.type})")
        output_key = last.inputs[0]
        ops = ops[:-1]
    shape = builder.shapes.get(output_key)
    if shape is not None and len(shape) != 2:
        raise ExplainError(
            f"The model's class scores have shape {shape}; explanations need a "
            "(batch, classes) output."
        )
    ops = _prune(ops, output_key)
    return Graph(
        ops=ops,
        input=input_key,
        output=output_key,
        input_shape=tuple(functional.inputs[0].shape),
        shapes=builder.shapes,
        stripped=stripped,
        output_activation=output_activation,
        name=model.name,
    )


def _prune(ops, output_key):
    """Drop ops the output does not depend on."""
    needed = {output_key}
    kept = []
    for op in reversed(ops):
        if op.output in needed:
            kept.append(op)
            needed.update(op.inputs)
    return kept[::-1]
