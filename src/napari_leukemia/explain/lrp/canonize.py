"""Canonizers: rewrite a graph into an equivalent one that LRP rules can handle well.

`fold_batchnorm` merges each BatchNormalization into the linear layer right before it
(``conv → BN`` becomes one conv with kernel ``w·γ/σ`` and bias ``(b − μ)·γ/σ + β``), as
Zennit's ``MergeBatchNorm`` does. The rules then see one affine layer, which is exact
(the map is that of the same function) and keeps LRP-0 = Gradient×Input. A batch norm
that cannot be merged (it follows an activation, an addition or the input, or its
linear layer feeds other layers too) stays an element-wise affine layer and gets the
composite's rule like any weighted layer.
"""

from __future__ import annotations

from dataclasses import replace

from ..graph import LINEAR, AffineLinear, FoldedLinear, Graph


def _foldable_base(op) -> bool:
    return (
        op is not None
        and op.kind == LINEAR
        and op.linear is not None
        and not op.linear.weightless
        and not isinstance(op.linear, AffineLinear)
    )


def fold_batchnorm(graph: Graph) -> tuple[Graph, list[str]]:
    """Return (new graph with BatchNorms merged where possible, names of merged pairs)."""
    consumers = graph.consumers()
    position = {op.output: i for i, op in enumerate(graph.ops)}
    ops = list(graph.ops)
    removed = set()
    merged = []
    for i, op in enumerate(graph.ops):
        is_norm = op.kind == LINEAR and isinstance(op.linear, AffineLinear)
        if not is_norm or op.type != "BatchNormalization":
            continue
        source = op.inputs[0]
        j = position.get(source)
        base = ops[j] if j is not None else None
        if not _foldable_base(base) or consumers.get(source, 0) != 1:
            continue
        if op.linear.channel_axis != base.linear.channel_axis:
            continue
        folded = FoldedLinear(base.linear, op.linear)
        ops[j] = replace(
            base,
            name=f"{base.name}+{op.name}",
            output=op.output,
            linear=folded,
            forward=lambda values, f=folded: f.forward(values),
        )
        removed.add(i)
        merged.append(f"{op.name} → {base.name}")
    new_ops = [op for i, op in enumerate(ops) if i not in removed]
    return replace(graph, ops=new_ops), merged
