"""The attribution methods offered by `explain`, their parameters and how to show them.

Pure Python (no TensorFlow), so widgets and the command line can list methods and build
their forms cheaply. The method ids are part of the public API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np


class ExplainError(ValueError):
    """Bad input to `explain`: the message names the problem and what to do."""


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


def _non_negative(name, value):
    return _float(name, value, 0.0)


def _positive(name, value):
    return _float(name, value, 0.0, strict=True)


def _seed(name, value):
    return _int(name, value, 0)


@dataclass(frozen=True)
class Param:
    """One parameter of a method: its default, what it means, and how it is checked.

    The form fields say how a parameter form shows it: `widget` is "int", "float" or
    "text" ("" = not shown in forms, e.g. batch sizes and seeds), within [`low`, `high`]
    in steps of `step`; for optional parameters (None = automatic) `none_as` is the form
    value that stands for None (0 for a window, "" for a layer name).
    """

    name: str
    default: object
    doc: str
    check: Callable = field(default=None, compare=False, repr=False)
    label: str = ""
    widget: str = ""
    low: float | None = None
    high: float | None = None
    step: float | None = None
    none_as: object = None

    def validate(self, value):
        """The value checked and normalised, or an `ExplainError` naming the parameter."""
        return value if self.check is None else self.check(self.name, value)


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
    params : the method's parameters with defaults and checks.
    reference : the paper the method comes from.
    summary : one line saying what the map is.
    runner : the key of the runner that computes it (`explain.runners.RUNNERS`).
    empty_reason : why this method's map can come out all zero (told to the user).
    joint_check : a check involving several parameters (values dict -> None or raise).
    form_group : the method whose parameter form this one shares (Grad-CAM++ uses
        Grad-CAM's layer field; "" = its own form). Shared forms have the same fields.
    """

    id: str
    label: str
    family: str
    signed: bool
    params: tuple[Param, ...] = field(default_factory=tuple)
    reference: str = ""
    summary: str = ""
    runner: str = ""
    empty_reason: str = "the explained logit has no gradient or relevance reaching the input here"
    joint_check: Callable | None = field(default=None, compare=False, repr=False)
    form_group: str = ""

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    @property
    def form_owner(self) -> str:
        """The id of the method whose form shows this method's parameters."""
        return self.form_group or self.id

    @property
    def form_params(self) -> tuple[Param, ...]:
        """The parameters a form shows (those with a `widget`)."""
        return tuple(p for p in self.params if p.widget)

    def resolve(self, params: dict) -> dict:
        """Defaults filled in and every value checked; unknown names raise `ExplainError`."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            valid = ", ".join(known) if known else "none"
            raise ExplainError(
                f"{self.id} has no parameter(s) {', '.join(unknown)}; its parameters are: {valid}."
            )
        values = {name: p.validate(params.get(name, p.default)) for name, p in known.items()}
        if self.joint_check is not None:
            self.joint_check(values)
        return values


def _alpha_and_beta(values):
    if values["alpha"] == 0 and values["beta"] == 0:
        raise ExplainError("alpha and beta cannot both be 0 (the map would be empty).")


def _low_below_high(values):
    low, high = values["low"], values["high"]
    if low is not None and high is not None and low >= high:
        raise ExplainError(f"low must be below high, got low={low}, high={high}.")


_BATCH = Param(
    "batch_size",
    None,
    "model inputs per forward/backward batch (None: as many as fit in ~256 MB of activations)",
    _optional(_int),
)
_Z_PLUS_EMPTY = "no positive contribution reached the input"


_LRP_PAPER = "Bach et al. 2015, On pixel-wise explanations ... by layer-wise relevance propagation"
_SIMONYAN = "Simonyan et al. 2014, Deep inside convolutional networks"

METHODS: dict[str, MethodInfo] = {
    m.id: m
    for m in (
        MethodInfo(
            "gradient",
            "Gradient",
            "gradient",
            True,
            (),
            _SIMONYAN,
            "∂logit/∂input, summed over channels (saliency).",
            runner="gradient",
        ),
        MethodInfo(
            "abs_gradient",
            "|Gradient|",
            "gradient",
            False,
            (),
            _SIMONYAN,
            "|∂logit/∂input| summed over channels.",
            runner="gradient",
        ),
        MethodInfo(
            "gradient_x_input",
            "Gradient × Input",
            "gradient",
            True,
            (),
            "Shrikumar et al. 2016; Ancona et al. 2018",
            "input ⊙ ∂logit/∂input, summed over channels (= LRP-0 on ReLU networks).",
            runner="gradient",
        ),
        MethodInfo(
            "integrated_gradients",
            "Integrated Gradients",
            "gradient",
            True,
            (
                Param(
                    "steps",
                    32,
                    "intervals of the straight path baseline → input (≥ 1)",
                    _int,
                    "steps",
                    "int",
                    1,
                    1024,
                    1,
                ),
                Param(
                    "baseline",
                    None,
                    "reference input: a number or an array shaped like the model input; "
                    "None = the model's empty input: the blank slide for a plugin model "
                    "that reads the cell alone, else 0 (black in the input space)",
                    _optional(_baseline),
                ),
                _BATCH,
            ),
            "Sundararajan et al. 2017, Axiomatic attribution for deep networks",
            "(x − x′) ⊙ mean gradient along the path (trapezoid rule); sums to f(x) − f(x′).",
            runner="integrated_gradients",
        ),
        MethodInfo(
            "smoothgrad",
            "SmoothGrad",
            "gradient",
            True,
            (
                Param(
                    "samples",
                    32,
                    "noisy copies averaged (≥ 1)",
                    _int,
                    "samples",
                    "int",
                    1,
                    1024,
                    1,
                ),
                Param(
                    "noise",
                    0.15,
                    "noise σ as a fraction of the input's value range (max − min); "
                    "the paper recommends 0.1–0.2",
                    _non_negative,
                    "noise",
                    "float",
                    0.0,
                    1.0,
                    0.05,
                ),
                Param("seed", 0, "seed of the noise, so maps are reproducible", _seed),
                _BATCH,
            ),
            "Smilkov et al. 2017, SmoothGrad: removing noise by adding noise",
            "Mean gradient over noisy copies of the input.",
            runner="smoothgrad",
        ),
        MethodInfo(
            "lrp_z",
            "LRP-z",
            "lrp",
            True,
            (),
            _LRP_PAPER,
            "LRP-0 in every layer: relevance split in proportion to the contributions z_ij.",
            runner="lrp",
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
                    _positive,
                    "ε",
                    "float",
                    1e-4,
                    1e3,
                    1e-4,
                ),
            ),
            _LRP_PAPER,
            "LRP-ε in every weighted layer (pooling and sums use LRP-0).",
            runner="lrp",
        ),
        MethodInfo(
            "lrp_alpha_beta",
            "LRP-αβ",
            "lrp",
            True,
            (
                Param(
                    "alpha",
                    1.0,
                    "weight of positive contributions (≥ 0)",
                    _non_negative,
                    "α",
                    "float",
                    0.0,
                    20.0,
                    0.5,
                ),
                Param(
                    "beta",
                    0.0,
                    "weight of negative contributions (≥ 0); α − β = 1 conserves relevance; "
                    "α=1, β=0 is the z⁺ rule",
                    _non_negative,
                    "β",
                    "float",
                    0.0,
                    20.0,
                    0.5,
                ),
            ),
            _LRP_PAPER,
            "Positive and negative contributions propagated separately, weighted α and −β.",
            runner="lrp",
            empty_reason=_Z_PLUS_EMPTY,
            joint_check=_alpha_and_beta,
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
                    _optional(_float),
                ),
                Param(
                    "high",
                    None,
                    "highest possible input value (None: 1 for plugin models, the image's "
                    "maximum for a plain keras.Model)",
                    _optional(_float),
                ),
            ),
            "Montavon et al. 2017, Explaining nonlinear classification decisions with deep "
            "Taylor decomposition",
            "z⁺ rule in hidden layers, bounded zᴮ rule on the input layer.",
            runner="lrp",
            empty_reason="no positive contribution reached the input (z⁺ keeps only positive "
            "evidence; document 003 saw such undefined Deep Taylor maps)",
            joint_check=_low_below_high,
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
                    _layer_name,
                    "layer",
                    "text",
                    none_as="",
                ),
            ),
            "Selvaraju et al. 2017, Grad-CAM: visual explanations from deep networks",
            "ReLU(Σ_k mean(∂logit/∂A_k) A_k), bilinearly upsampled to the input.",
            runner="cam",
            empty_reason="every feature map has a negative or zero weight, so the ReLU "
            "removed all",
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
                    _layer_name,
                    "layer",
                    "text",
                    none_as="",
                ),
            ),
            "Chattopadhay et al. 2018, Grad-CAM++: improved visual explanations",
            "Grad-CAM with pixel-wise weights of positive gradients (closed form, exp score).",
            runner="cam",
            empty_reason="no feature map has a positive gradient",
            form_group="grad_cam",
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
                    _optional(_int),
                    "window",
                    "int",
                    0,
                    1024,
                    1,
                    none_as=0,
                ),
                Param(
                    "stride",
                    None,
                    "step between windows in pixels (None: window // 2)",
                    _optional(_int),
                    "stride",
                    "int",
                    0,
                    1024,
                    1,
                    none_as=0,
                ),
                Param(
                    "fill",
                    None,
                    "value of the occluding square (None: the input's per-channel mean)",
                    _optional(_float),
                ),
                _BATCH,
            ),
            "Zeiler & Fergus 2014, Visualizing and understanding convolutional networks",
            "Drop of the logit when a square is occluded, averaged over the windows "
            "covering each pixel.",
            runner="occlusion",
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


def resolve_params(method: str, params: dict) -> dict:
    """Defaults filled in and every value checked; unknown names raise `ExplainError`."""
    return method_info(method).resolve(params)
