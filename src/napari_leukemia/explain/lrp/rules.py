"""LRP rules as small objects (after Zennit): which inputs, which weights, which signs.

A rule is data, not a procedure. It lists *groups* of *terms*; each term says how to
modify the layer's input (``x``, its positive part ``x+``, negative part ``x-``, or the
input-domain bounds ``low`` / ``high``) and its weights (``w``, ``w+``, ``w-``, with the
bias modified alike when the term includes it), and the sign it enters with. For one
group the modified outputs are summed into a denominator z, and relevance is
redistributed with the gradient trick:

    R_in = group.weight * Σ_terms sign · x_mod ⊙ ∂(z_mod · stop(R / stabilise(z)))/∂x_mod

One generic mechanism (`analyzer.propagate_linear`) applies any rule, so adding a rule
is a few lines here.
"""

from __future__ import annotations

from dataclasses import dataclass

INPUTS = ("x", "x+", "x-", "low", "high")
WEIGHTS = ("w", "w+", "w-")


@dataclass(frozen=True)
class Term:
    """One modified copy of the layer: inputs, weights, whether the bias is included."""

    input: str = "x"
    weights: str = "w"
    bias: bool = True
    sign: float = 1.0

    def __post_init__(self):
        if self.input not in INPUTS or self.weights not in WEIGHTS:
            raise ValueError(f"Unknown term {self}.")


@dataclass(frozen=True)
class Group:
    """Terms sharing one denominator; the group's relevance is multiplied by `weight`."""

    terms: tuple[Term, ...]
    weight: float = 1.0


@dataclass(frozen=True)
class Rule:
    """An LRP rule: groups of terms plus the stabiliser ε of the denominators.

    The stabiliser is ``z + ε·sign(z)`` with sign(0) = +1 (as in Zennit). It defaults
    to a tiny 1e-30: the denominators of z⁺, αβ and zᴮ are sums of same-signed terms, so
    a zero denominator means zero numerators and ε only guards 0/0 (a larger value would
    swallow all relevance of networks with tiny activations, e.g. untrained ones).
    """

    name: str
    groups: tuple[Group, ...]
    epsilon: float = 1e-30
    needs_bounds: bool = False

    @property
    def is_lrp0(self) -> bool:
        """LRP-0: the layer itself, bias included, and only the tiny default stabiliser."""
        return (
            self.groups == (Group((Term(),)),)
            and self.epsilon <= Rule.epsilon
            and not self.needs_bounds
        )


def z_rule() -> Rule:
    """LRP-0 / LRP-z (Bach et al. 2015): R_i = Σ_j x_i w_ij / z_j · R_j.

    Only a tiny stabiliser (1e-30) guards against division by zero, so LRP-0 stays
    equal to Gradient×Input on ReLU networks even where pre-activations are tiny.
    """
    return Rule("z", (Group((Term(),)),))


def epsilon_rule(epsilon: float) -> Rule:
    """LRP-ε (Bach et al. 2015): z_j + ε·sign(z_j) in the denominator.

    ε absorbs the relevance of weak or contradictory activations (less noise, less
    conservation); ε → 0 gives LRP-0.
    """
    return Rule(f"epsilon({epsilon:g})", (Group((Term(),)),), epsilon=float(epsilon))


def alpha_beta_rule(alpha: float = 1.0, beta: float = 0.0, bias: bool = True) -> Rule:
    """LRP-αβ (Bach et al. 2015): α·R⁺ − β·R⁻, positive and negative parts separately.

    Positive contributions are x⁺w⁺ and x⁻w⁻ (plus b⁺ when `bias`), negative ones x⁺w⁻ and
    x⁻w⁺ (plus b⁻); each part is normalised by its own sum, as in Zennit's AlphaBeta.
    α=1, β=0 is the z⁺ rule.
    """
    positive = Group((Term("x+", "w+", bias), Term("x-", "w-", False)), float(alpha))
    negative = Group((Term("x+", "w-", bias), Term("x-", "w+", False)), -float(beta))
    groups = (positive,) if beta == 0 else (positive, negative)
    return Rule(f"alpha_beta({alpha:g},{beta:g})", groups)


def z_plus_rule(bias: bool = False) -> Rule:
    """z⁺ rule of Deep Taylor decomposition (Montavon et al. 2017): positive weights only.

    R_i = Σ_j x_i w_ij⁺ / Σ_i' x_i' w_i'j⁺ · R_j for non-negative (ReLU) inputs; negative
    inputs use w⁻ as in Zennit's ZPlus. The bias is ignored by default, as in the paper.
    """
    rule = alpha_beta_rule(1.0, 0.0, bias=bias)
    return Rule("z_plus" if not bias else "z_plus_bias", rule.groups)


def z_box_rule() -> Rule:
    """zᴮ rule for the input layer (Montavon et al. 2017), bounded inputs l ≤ x ≤ h.

    R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / Σ_i'(...) · R_j; the bounds come from the
    analyzer (the input domain). All numerators are ≥ 0 when l ≤ x ≤ h.
    """
    terms = (
        Term("x", "w", False),
        Term("low", "w+", False, -1.0),
        Term("high", "w-", False, -1.0),
    )
    return Rule("z_box", (Group(terms),), needs_bounds=True)
