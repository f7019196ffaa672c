"""Parquet tables inside the store: bytes written through fsspec, so any store URL works.

Each table carries, in its Parquet key-value metadata, which label image its rows point
at (the ngio / fractal convention of a feature table with a ``region`` and an
``instance_key``).
"""

from __future__ import annotations

import io
import json
import uuid

import pandas as pd

META_KEY = b"napari_leukemia"


def to_parquet_bytes(table: pd.DataFrame, meta: dict | None = None) -> bytes:
    """`table` as Parquet, with `meta` (JSON) in the file's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    if meta:
        merged = dict(arrow.schema.metadata or {})
        merged[META_KEY] = json.dumps(meta).encode()
        arrow = arrow.replace_schema_metadata(merged)
    buffer = io.BytesIO()
    pq.write_table(arrow, buffer)
    return buffer.getvalue()


def write_table(fs, path: str, table: pd.DataFrame, meta: dict | None = None) -> None:
    """Write `table` to ``path`` on file system `fs` (parents made as needed).

    The bytes go to a ``.partial`` file first, which then replaces ``path``, so a
    write cut short (a full disk) leaves the previous table, not half of a new one.
    """
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    partial = f"{path}.{uuid.uuid4().hex}.partial"
    try:
        fs.pipe_file(partial, to_parquet_bytes(table, meta))
        fs.mv(partial, path)
    except BaseException:
        if fs.exists(partial):
            fs.rm(partial)
        raise


def read_table(fs, path: str) -> pd.DataFrame:
    """The table at ``path``; its metadata (if any) in ``table.attrs``."""
    import pyarrow.parquet as pq

    with fs.open(path, "rb") as handle:
        arrow = pq.read_table(handle)
    table = arrow.to_pandas()
    meta = (arrow.schema.metadata or {}).get(META_KEY)
    if meta:
        table.attrs.update(json.loads(meta))
    return table
