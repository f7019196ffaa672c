"""Speed of classification with the bundled model (target: one cell <= 30 ms median).

Run: ``python benchmarks/bench_classify.py``. Times are medians after a warm-up call;
"one cell" is ROI extraction + preprocessing + the forward pass for one selected cell,
"field" adds cell detection and one batched forward pass over the field's cells.
"""

from __future__ import annotations

import time

from timing import median_ms

from napari_leukemia.model.classify import classify, load_model
from napari_leukemia.synthetic import make_smear


def main() -> None:
    start = time.perf_counter()
    model = load_model()
    print(
        f"load bundled model: {time.perf_counter() - start:.2f} s (includes importing TensorFlow)"
    )
    smear = make_smear(seed=0)
    bbox = smear.cell_bboxes[0]
    cell = median_ms(lambda: classify(smear.image, model, bbox=bbox))
    field = median_ms(lambda: classify(smear.image, model), repeats=20)
    print(
        f"classify one cell (224x224 field): {cell:.1f} ms median (target <= 30 ms) "
        f"{'ok' if cell <= 30 else 'SLOW'}"
    )
    print(f"classify a field (detect + all cells): {field:.1f} ms median")


if __name__ == "__main__":
    main()
