"""The classifier: architectures, data, training, evaluation, loading and inference.

Nothing here imports TensorFlow at module import; `keras_module()` does, on first use.
"""
