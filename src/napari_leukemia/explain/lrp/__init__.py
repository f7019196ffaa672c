"""Layer-wise relevance propagation for Keras 3 (Bach et al. 2015) on tf.GradientTape.

`rules` (what each rule computes), `composites` (which rule where), `canonize`
(BatchNorm folding), `analyzer` (the compiled propagation). Imports TensorFlow.
"""
