"""Write files so that a failed or interrupted write never harms what was there before.

Each file is written to a fresh, uniquely named temporary file in the destination's
folder (so it cannot collide with a user's file) and then renamed onto the
destination in one step (``os.replace``, atomic on one file system). On any error,
Ctrl+C included, the temporary files are removed and the old files stay as they were.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["commit", "deferred_interrupt", "staged", "temp_path"]


def temp_path(target: Path | str) -> Path:
    """A new empty, uniquely named hidden file beside `target`, with the same suffix."""
    target = Path(target)
    fd, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}"
    )
    os.close(fd)
    mask = os.umask(0o022)  # read the umask (setting it is the only way), then restore
    os.umask(mask)
    os.chmod(name, 0o666 & ~mask)  # the permissions a plain open() would have given
    return Path(name)


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl+C (SIGINT) until the block is done, then raise it.

    Keeps a group of renames together: an interrupt cannot land between them. Only the
    main thread receives signals, so elsewhere this does nothing.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and callable(previous):
        previous(signal.SIGINT, None)
    elif received and previous == signal.SIG_DFL:
        raise KeyboardInterrupt


def commit(tmp: Path | str, target: Path | str, overwrite: bool) -> None:
    """Rename `tmp` onto `target`; without `overwrite` an existing `target` is kept.

    The no-overwrite case uses a hard link, which fails if `target` exists, so a file
    that appeared while writing is never replaced.
    """
    tmp, target = Path(tmp), Path(target)
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise FileExistsError(
            f"{target} appeared while saving; it was not overwritten. "
            "Choose another name or allow overwriting."
        ) from None
    except OSError as error:  # file system without hard links: check, then rename
        if target.exists():
            raise FileExistsError(
                f"{target} appeared while saving; it was not overwritten."
            ) from error
        os.replace(tmp, target)
    tmp.unlink(missing_ok=True)


@contextmanager
def staged(targets: Sequence[Path | str], overwrite: bool = True) -> Iterator[list[Path]]:
    """Yield a temporary path per target; when the block succeeds, rename them all.

    If the block (or a rename) fails, every temporary file is removed and the targets
    not yet renamed are untouched.
    """
    temps: list[Path] = []
    try:
        for target in targets:
            temps.append(temp_path(target))
        yield temps
        with deferred_interrupt():
            for tmp, target in zip(temps, targets, strict=True):
                commit(tmp, target, overwrite)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
