"""Batch analysis: detect → classify → explain → quantify many images into one store.

`run_batch` is what ``napari-leukemia batch`` calls. The work is split into modules with
one job each: `inputs` (which files), `analysis` (one image, on a Dask worker), `store`
(the OME-Zarr store and its Parquet tables), `runner` (the Dask client and the loop) and
`progress` (the progress bar).
"""

from __future__ import annotations

from .inputs import InputError, collect_inputs
from .runner import BatchError, run_batch

__all__ = ["BatchError", "InputError", "collect_inputs", "run_batch"]
