"""A progress bar over images, with rate and ETA (tqdm), counting cells on the side."""

from __future__ import annotations

import sys


class Progress:
    """``with Progress(total, done) as bar: bar.advance(n_cells)`` after each image."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True):
        from tqdm import tqdm

        self.cells = 0
        self._bar = tqdm(
            total=total,
            initial=done,
            unit="image",
            desc="batch",
            file=sys.stderr,
            disable=not enabled,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def advance(self, cells: int = 0, failed: bool = False) -> None:
        self.cells += cells
        self._bar.set_postfix(cells=self.cells, refresh=False)
        self._bar.update(1)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
