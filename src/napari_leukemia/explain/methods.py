"""The attribution methods offered by `explain`, their parameters and how to show them.

Pure Python (no TensorFlow), so widgets and the command line can list methods and build
their forms cheaply. The method ids are part of the public API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np


class ExplainError(ValueError):
    """Bad input to `explain`: the message names the problem and what to do."""


@dataclass(frozen=True)
class Param:
    """One parameter of a method: its default and what it means (units, range)."""

    name: str
    default: object
    doc: str


@dataclass(frozen=True)
class MethodInfo:
    """Registry entry of one attribution method.

    Attributes
    ----------
    id : the method id passed to `explain` (``"lrp_epsilon"``).
    label : short human-readable name ("LRP-ε").
    family : "gradient", "lrp", "cam" or "perturbation".
    signed : True when maps can be negative (show them with a diverging colormap around
        0); False when they are non-negative for a positive logit (show as a heatmap).
    params : the method's parameters with defaults.
    reference : the paper the method comes from.
    """

    id: str
    label: str
    family: str
    signed: bool
    params: tuple[Param, ...] = field(default_factory=tuple)
    reference: str = ""
    summary: str = ""

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


_BATCH = Param(
    "batch_size",
    None,
    "model inputs per forward/backward batch (None: as many as fit in ~256 MB of activations)",
)

METHODS: dict[str, MethodInfo] = {
    m.id: m
    for m in (
        MethodInfo(
            "gradient",
            "Gradient",
            "gradient",
            True,
            (),
            "Simonyan et al. 2014, Deep inside convolutional networks",
            "∂logit/∂input, summed over channels (saliency).",
        ),
        MethodInfo(
            "abs_gradient",
            "|Gradient|",
            "gradient",
            False,
            (),
            "Simonyan et al. 2014, Deep inside convolutional networks",
            "|∂logit/∂input| summed over channels.",
        ),
        MethodInfo(
            "gradient_x_input",
            "Gradient × Input",
            "gradient",
            True,
            (),
            "Shrikumar et al. 2016; Ancona et al. 2018",
            "input ⊙ ∂logit/∂input, summed over channels (= LRP-0 on ReLU networks).",
        ),
        MethodInfo(
            "integrated_gradients",
            "Integrated Gradients",
            "gradient",
            True,
            (
                Param("steps", 32, "intervals of the straight path baseline → input (≥ 1)"),
                Param(
                    "baseline",
                    0.0,
                    "reference input: a number or an array shaped like the model input "
                    "(0 = black in the model's input space)",
                ),
                _BATCH,
            ),
            "Sundararajan et al. 2017, Axiomatic attribution for deep networks",
            "(x − x′) ⊙ mean gradient along the path (trapezoid rule); sums to f(x) − f(x′).",
        ),
        MethodInfo(
            "smoothgrad",
            "SmoothGrad",
            "gradient",
            True,
            (
                Param("samples", 32, "noisy copies averaged (≥ 1)"),
                Param(
                    "noise",
                    0.15,
                    "noise σ as a fraction of the input's value range (max − min); "
                    "the paper recommends 0.1–0.2",
                ),
                Param("seed", 0, "seed of the noise, so maps are reproducible"),
                _BATCH,
            ),
            "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
            "Mean gradient over noisy copies of the input.",
        ),
        MethodInfo(
            "lrp_z",
            "LRP-z",
            "lrp",
            True,
            (),
            "Bach et al. 2015, On pixel-wise explanations ... by layer-wise relevance propagation",
            "LRP-0 in every layer: relevance split in proportion to the contributions z_ij.",
        ),
        MethodInfo(
            "lrp_epsilon",
            "LRP-ε",
            "lrp",
            True,
            (
                Param(
                    "epsilon",
                    0.1,
                    "stabiliser added to each pre-activation's magnitude, in the units of "
                    "the layer's pre-activations (> 0); larger absorbs weak, noisy relevance",
                ),
            ),
            "Bach et al. 2015, On pixel-wise explanations ... by layer-wise relevance propagation",
            "LRP-ε in every weighted layer (pooling and sums use LRP-0).",
        ),
        MethodInfo(
            "lrp_alpha_beta",
            "LRP-αβ",
            "lrp",
            True,
            (
                Param("alpha", 1.0, "weight of positive contributions (≥ 0)"),
                Param(
                    "beta",
                    0.0,
                    "weight of negative contributions (≥ 0); α − β = 1 conserves relevance; "
                    "α=1, β=0 is the z⁺ rule",
                ),
            ),
            "Bach et al. 2015, On pixel-wise explanations ... by layer-wise relevance propagation",
            "Positive and negative contributions propagated separately, weighted α and −β.",
        ),
        MethodInfo(
            "deep_taylor",
            "Deep Taylor",
            "lrp",
            False,
            (
                Param(
                    "low",
                    None,
                    "lowest possible input value for the zᴮ rule (None: 0 for plugin models, "
                    "the image's minimum for a plain keras.Model)",
                ),
                Param(
                    "high",
                    None,
                    "highest possible input value (None: 1 for plugin models, the image's "
                    "maximum for a plain keras.Model)",
                ),
            ),
            "Montavon et al. 2017, Explaining nonlinear classification decisions with deep "
            "Taylor decomposition",
            "z⁺ rule in hidden layers, bounded zᴮ rule on the input layer.",
        ),
        MethodInfo(
            "grad_cam",
            "Grad-CAM",
            "cam",
            False,
            (
                Param(
                    "layer",
                    None,
                    "name of the feature-map layer (None: the last convolutional layer, "
                    "after its batch norm / activation / residual add)",
                ),
            ),
            "Selvaraju et al. 2017, Grad-CAM: visual explanations from deep networks",
            "ReLU(Σ_k mean(∂logit/∂A_k) A_k), bilinearly upsampled to the input.",
        ),
        MethodInfo(
            "grad_cam_pp",
            "Grad-CAM++",
            "cam",
            False,
            (
                Param(
                    "layer",
                    None,
                    "name of the feature-map layer (None: as for Grad-CAM)",
                ),
            ),
            "Chattopadhay et al. 2018, Grad-CAM++: improved visual explanations",
            "Grad-CAM with pixel-wise weights of positive gradients (closed form, exp score).",
        ),
        MethodInfo(
            "occlusion",
            "Occlusion",
            "perturbation",
            True,
            (
                Param(
                    "window",
                    None,
                    "side of the occluding square in model-input pixels (None: 1/8 of the "
                    "shorter input side, at least 2)",
                ),
                Param("stride", None, "step between windows in pixels (None: window // 2)"),
                Param(
                    "fill",
                    None,
                    "value of the occluding square (None: the input's per-channel mean)",
                ),
                _BATCH,
            ),
            "Zeiler & Fergus 2014, Visualizing and understanding convolutional networks",
            "Drop of the logit when a square is occluded, averaged over the windows "
            "covering each pixel.",
        ),
    )
}


def method_info(method: str) -> MethodInfo:
    """The registry entry of `method`, or an `ExplainError` listing the valid ids."""
    if not isinstance(method, str) or method not in METHODS:
        raise ExplainError(
            f"Unknown attribution method {method!r}; choose one of {', '.join(METHODS)}."
        )
    return METHODS[method]


def _int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < low:
        raise ExplainError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _float(name, value, low=None, strict=False):
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ExplainError(f"{name} must be a finite number, got {value!r}.")
    value = float(value)
    if low is not None and (value <= low if strict else value < low):
        raise ExplainError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}.")
    return value


def _optional(check):
    """`check`, except that None stays None (a parameter whose None means "automatic")."""
    return lambda name, value: None if value is None else check(name, value)


def _baseline(name, value):
    if isinstance(value, Real) and not isinstance(value, bool):
        return _float(name, value)
    array = np.asarray(value, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ExplainError(f"{name} must be finite.")
    return array


def _layer_name(name, value):
    if value is not None and not isinstance(value, str):
        raise ExplainError(f"{name} must be a layer name (str) or None, got {value!r}.")
    return value


#: How each parameter's value is checked and normalised, by parameter name.
PARAM_CHECKS = {
    "batch_size": _optional(_int),
    "steps": _int,
    "baseline": _baseline,
    "samples": _int,
    "noise": lambda n, v: _float(n, v, 0.0),
    "seed": lambda n, v: _int(n, v, 0),
    "epsilon": lambda n, v: _float(n, v, 0.0, strict=True),
    "alpha": lambda n, v: _float(n, v, 0.0),
    "beta": lambda n, v: _float(n, v, 0.0),
    "low": _optional(_float),
    "high": _optional(_float),
    "layer": _layer_name,
    "window": _optional(_int),
    "stride": _optional(_int),
    "fill": _optional(_float),
}


def _alpha_and_beta(values):
    if values["alpha"] == 0 and values["beta"] == 0:
        raise ExplainError("alpha and beta cannot both be 0 (the map would be empty).")


def _low_below_high(values):
    low, high = values["low"], values["high"]
    if low is not None and high is not None and low >= high:
        raise ExplainError(f"low must be below high, got low={low}, high={high}.")


#: Checks that involve several parameters of one method.
JOINT_CHECKS = {"lrp_alpha_beta": _alpha_and_beta, "deep_taylor": _low_below_high}


def resolve_params(method: str, params: dict) -> dict:
    """Defaults filled in and every value checked; unknown names raise `ExplainError`."""
    known = method_info(method).defaults()
    unknown = sorted(set(params) - set(known))
    if unknown:
        valid = ", ".join(known) if known else "none"
        raise ExplainError(
            f"{method} has no parameter(s) {', '.join(unknown)}; its parameters are: {valid}."
        )
    values = {name: PARAM_CHECKS[name](name, v) for name, v in {**known, **params}.items()}
    if method in JOINT_CHECKS:
        JOINT_CHECKS[method](values)
    return values
