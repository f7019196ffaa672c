"""Composites: which LRP rule applies to which op (after Zennit's composites).

A composite answers ``rule(op, first)`` where `first` says the op reads the model input
(through padding / reshaping only). Weighted ops are convolutions and dense layers;
element-wise ops are batch norms that could not be folded (and Rescaling); weight-free
ops are average pooling, upsampling and sums (Add).
"""

from __future__ import annotations

from dataclasses import dataclass

from .rules import Rule, alpha_beta_rule, epsilon_rule, z_box_rule, z_plus_rule, z_rule


@dataclass(frozen=True)
class Composite:
    """Rules for the first layer, weighted, element-wise and weight-free layers."""

    name: str
    weighted: Rule
    weightless: Rule
    first: Rule | None = None  # None: the same as for other layers
    elementwise: Rule | None = None  # None: the weighted rule

    def rule(self, op, first: bool) -> Rule:
        if first and self.first is not None:
            return self.first
        if op.linear.weightless:
            return self.weightless
        if op.linear.elementwise and self.elementwise is not None:
            return self.elementwise
        return self.weighted

    @property
    def needs_bounds(self) -> bool:
        return self.first is not None and self.first.needs_bounds


def lrp_z() -> Composite:
    """LRP-0 everywhere (Bach et al. 2015)."""
    return Composite("lrp_z", z_rule(), z_rule())


def lrp_epsilon(epsilon: float) -> Composite:
    """LRP-ε in weighted layers; pooling and sums split relevance with LRP-0."""
    return Composite("lrp_epsilon", epsilon_rule(epsilon), z_rule())


def lrp_alpha_beta(alpha: float, beta: float) -> Composite:
    """LRP-αβ in weighted layers; z⁺ (α=1, β=0) in weight-free and element-wise ones.

    An op with one contribution per output (element-wise) or only positive weights
    (pooling, sums) has no negative part, where αβ would multiply relevance by α (or
    flip it with −β); z⁺ splits it by the positive contributions instead, which keeps
    α − β = 1 conservative and z⁺ maps sign-preserving.
    """
    plus = alpha_beta_rule(1.0, 0.0)
    return Composite("lrp_alpha_beta", alpha_beta_rule(alpha, beta), plus, elementwise=plus)


def deep_taylor() -> Composite:
    """Deep Taylor decomposition (Montavon et al. 2017): z⁺ inside, zᴮ at the input."""
    plus = z_plus_rule()
    return Composite("deep_taylor", plus, plus, first=z_box_rule(), elementwise=plus)


def for_method(method: str, params: dict) -> Composite:
    if method == "lrp_z":
        return lrp_z()
    if method == "lrp_epsilon":
        return lrp_epsilon(params["epsilon"])
    if method == "lrp_alpha_beta":
        return lrp_alpha_beta(params["alpha"], params["beta"])
    if method == "deep_taylor":
        return deep_taylor()
    raise ValueError(f"{method} is not an LRP method.")
