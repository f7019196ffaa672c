"""The one way widgets run slow work: a napari worker with a busy bar and error report.

Every widget does "gather inputs → `run_in_worker` → show the result"; this module owns
the button/progress/status plumbing and the model preloading, so widget files hold no
threading code of their own.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from pathlib import Path

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error

FIRST_LOAD_MESSAGE = "Loading TensorFlow and the model (first time only, ~10 s)…"


def run_in_worker(
    function: Callable,
    *args,
    action: str,
    button=None,
    progress=None,
    status=None,
    on_returned: Callable | None = None,
    on_yielded: Callable | None = None,
    on_done: Callable | None = None,
    total: int | None = None,
):
    """Start `function(*args)` in a worker thread; return the worker.

    While it runs `button` is disabled and `progress` shows (busy when `total` is None).
    A raised error becomes ``"<action> failed: …"`` in a notification and
    ``"Failed: …"`` in `status`; the widget keeps working. `on_done` runs last, after
    success or failure.
    """
    kwargs = {"_ignore_errors": True}  # reported below; never re-raised in the GUI
    if total is not None:
        kwargs["_progress"] = {"total": total, "desc": action}
    worker = create_worker(function, *args, **kwargs)
    _set_busy(button, progress, busy=True)

    def failed(error):
        if status is not None:
            status.value = f"Failed: {error}"
        show_error(f"{action} failed: {error}")

    def finished():
        _set_busy(button, progress, busy=False)
        if on_done is not None:
            on_done()

    if on_returned is not None:
        worker.returned.connect(on_returned)
    if on_yielded is not None:
        worker.yielded.connect(on_yielded)
    worker.errored.connect(failed)
    worker.finished.connect(finished)
    worker.start()
    return worker


def status_label(text: str = ""):
    """A status line that wraps long messages instead of widening the dock."""
    from magicgui.widgets import Label

    label = Label(value=text)
    label.native.setWordWrap(True)
    return label


def _set_busy(button, progress, busy: bool) -> None:
    if button is not None:
        button.enabled = not busy
    if progress is not None:
        progress.visible = busy


# ------------------------------------------------------------------ model preloading
_preloads: dict = {}
_preload_lock = threading.Lock()


@atexit.register
def _wait_for_preloads(timeout: float = 120.0) -> None:
    """At exit, let a model load that is still running finish: tearing TensorFlow down
    in the middle of its import crashes the process instead of closing it."""
    for thread in list(_preloads.values()):
        thread.join(timeout)


def preload_model(path: Path | None = None) -> threading.Thread:
    """Load TensorFlow and a model in the background (once per path), so the first
    click does not wait for it. Errors are left for the click to report."""
    with _preload_lock:
        thread = _preloads.get(path)
        if thread is None:
            thread = threading.Thread(
                target=_load_quietly, args=(path,), name="napari-leukemia-preload", daemon=True
            )
            _preloads[path] = thread
            thread.start()
        return thread


def _load_quietly(path):
    from ..model.classify import load_model

    with contextlib.suppress(Exception):  # the click that needs the model reports it
        load_model(path)


def model_is_ready(path: Path | None = None) -> bool:
    """True once `preload_model(path)` has finished (the next load is a cache hit)."""
    thread = _preloads.get(path)
    return thread is not None and not thread.is_alive()


def waiting_message(path: Path | None, doing: str) -> str:
    """`doing`, or the first-load message while TensorFlow and the model still load."""
    preload_model(path)
    return doing if model_is_ready(path) else FIRST_LOAD_MESSAGE
