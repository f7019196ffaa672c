"""A progress bar over images, with rate and ETA (tqdm), counting cells on the side.

Instead of ``True``/``False`` a caller may pass a function as `enabled` (what
``run_batch(progress=...)`` forwards): it is called as ``report(done, total, cells)``
at the start and after each image, in place of the terminal bar. The napari Batch
widget shows its own bar this way; a report that raises stops the run (the runner then
cancels the images still queued).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Report = Callable[[int, int, int], None]


class Progress:
    """``with Progress(total, done) as bar: bar.advance(n_cells)`` after each image."""

    def __init__(self, total: int, done: int = 0, enabled: bool | Report = True):
        from tqdm import tqdm

        self.cells = 0
        self.total, self.done = total, done
        self._report = enabled if callable(enabled) else None
        self._bar = tqdm(
            total=total,
            initial=done,
            unit="image",
            desc="batch",
            file=sys.stderr,
            disable=self._report is not None or not enabled,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        if self._report is not None:
            self._report(self.done, self.total, self.cells)

    def advance(self, cells: int = 0, failed: bool = False) -> None:
        self.cells += cells
        self.done += 1
        self._bar.set_postfix(cells=self.cells, refresh=False)
        self._bar.update(1)
        if self._report is not None:
            self._report(self.done, self.total, self.cells)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
