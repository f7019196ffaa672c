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


def resolve_params(method: str, params: dict) -> dict:
    """Defaults filled in and every value checked; unknown names raise `ExplainError`."""
    info = method_info(method)
    known = info.defaults()
    unknown = sorted(set(params) - set(known))
    if unknown:
        valid = ", ".join(known) if known else "none"
        raise ExplainError(
            f"{method} has no parameter(s) {', '.join(unknown)}; its parameters are: {valid}."
        )
    values = {**known, **params}
    if "batch_size" in values and values["batch_size"] is not None:
        values["batch_size"] = _int("batch_size", values["batch_size"])
    if method == "integrated_gradients":
        values["steps"] = _int("steps", values["steps"])
        baseline = values["baseline"]
        if isinstance(baseline, Real) and not isinstance(baseline, bool):
            values["baseline"] = _float("baseline", baseline)
        else:
            array = np.asarray(baseline, dtype=np.float32)
            if not np.all(np.isfinite(array)):
                raise ExplainError("baseline must be finite.")
            values["baseline"] = array
    elif method == "smoothgrad":
        values["samples"] = _int("samples", values["samples"])
        values["noise"] = _float("noise", values["noise"], 0.0)
        values["seed"] = _int("seed", values["seed"], 0)
    elif method == "lrp_epsilon":
        values["epsilon"] = _float("epsilon", values["epsilon"], 0.0, strict=True)
    elif method == "lrp_alpha_beta":
        values["alpha"] = _float("alpha", values["alpha"], 0.0)
        values["beta"] = _float("beta", values["beta"], 0.0)
        if values["alpha"] == 0 and values["beta"] == 0:
            raise ExplainError("alpha and beta cannot both be 0 (the map would be empty).")
    elif method == "deep_taylor":
        for name in ("low", "high"):
            if values[name] is not None:
                values[name] = _float(name, values[name])
        low, high = values["low"], values["high"]
        if low is not None and high is not None and low >= high:
            raise ExplainError(
                f"low must be below high, got low={values['low']}, high={values['high']}."
            )
    elif method in ("grad_cam", "grad_cam_pp"):
        if values["layer"] is not None and not isinstance(values["layer"], str):
            raise ExplainError(
                f"layer must be a layer name (str) or None, got {values['layer']!r}."
            )
    elif method == "occlusion":
        if values["window"] is not None:
            values["window"] = _int("window", values["window"])
        if values["stride"] is not None:
            values["stride"] = _int("stride", values["stride"])
        if values["fill"] is not None:
            values["fill"] = _float("fill", values["fill"])
    return values
