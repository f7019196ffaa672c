"""Load Keras (TensorFlow backend) only when a model is first needed, once, safely.

Two things about *where* TensorFlow is imported matter in a napari session:

- Mesa's OpenGL driver has already loaded its own libLLVM, whose symbols would win over
  TensorFlow's and crash its static initialisers; so the import uses ``RTLD_DEEPBIND``.
- TensorFlow's pybind11 bindings remember the Python thread state of the thread that
  first imports them (pybind11 stores it in that OS thread's thread-specific storage
  when it creates its internals). napari's workers run in a ``QThreadPool``: the thread
  that imported TensorFlow is reused for the next worker with a *new* thread state, and
  pybind11 then acquires the GIL with the freed old one (segfault in ``take_gil`` on
  the second Classify). So the import happens on a thread whose thread state lives as
  long as the process: the main thread when called there, else a dedicated thread of
  ours that never exits.

A lock makes concurrent first calls (several threads explaining at once) import once.
"""

from __future__ import annotations

import os
import sys
import threading

_IMPORT_LOCK = threading.Lock()
_KEEPER_NAME = "napari-leukemia-tensorflow-import"
_imported = threading.Event()  # set once TensorFlow and Keras are imported


def _import_modules() -> None:
    """Import TensorFlow (with its own LLVM bound to itself) and Keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        flags = sys.getdlopenflags()
        if hasattr(os, "RTLD_DEEPBIND"):
            sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.setdlopenflags(flags)
    import keras  # noqa: F401


def _import_on_keeper_thread() -> None:
    """Import on a daemon thread that then waits forever, keeping its thread state."""
    outcome: dict = {}
    imported = threading.Event()

    def keep():
        try:
            _import_modules()
        except BaseException as error:  # noqa: BLE001  (re-raised in the caller)
            outcome["error"] = error
        imported.set()
        if "error" not in outcome:
            _imported.set()
            threading.Event().wait()  # never returns: this thread state must stay valid

    threading.Thread(target=keep, name=_KEEPER_NAME, daemon=True).start()
    imported.wait()
    if "error" in outcome:
        raise outcome["error"]


def import_tensorflow() -> None:
    """Import TensorFlow and Keras once, from any thread; a no-op afterwards."""
    if _imported.is_set():
        return
    with _IMPORT_LOCK:
        if _imported.is_set():
            return
        if threading.current_thread() is threading.main_thread():
            _import_modules()
            _imported.set()
        else:
            _import_on_keeper_thread()


def keras_module():
    """Import and return `keras`, quietly and on the TensorFlow backend."""
    import_tensorflow()
    import keras

    return keras


def tensorflow_module():
    """Import (once, as above) and return `tensorflow`."""
    import_tensorflow()
    import tensorflow

    return tensorflow
