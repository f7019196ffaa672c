"""Shared fixtures: where the real data lives (and a skip when it is absent), and small
file systems of their own for full-disk and read-only tests."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test with a reason."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, megabytes, read_only=False)`` mounts a tmpfs at ``tmp_path/name``
    and returns its path; unmounted after the test. Skips when not root (mounting needs
    it) or when the kernel refuses."""
    mounted = []

    def mount(name: str, megabytes: int = 8, read_only: bool = False) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a file system of its own is mounted as a tmpfs, which needs root")
        folder = tmp_path / name
        folder.mkdir()
        options = f"size={megabytes}m" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], check=False)


def bare_box(shape, boxes, side: int) -> tuple[int, int, int, int]:
    """The first `side`-px box (raster order, 4-px grid) of an image of `shape` that no
    box in `boxes` touches: red cells and slide only."""
    from napari_leukemia.sanity.placement import free_offsets

    occupied = np.zeros(shape[:2], bool)
    for r0, c0, r1, c1 in boxes:
        occupied[max(int(r0), 0) : int(r1), max(int(c0), 0) : int(c1)] = True
    top, left = free_offsets(occupied, (0, 0, side, side))[0]
    return int(top), int(left), int(top) + side, int(left) + side


_exit_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without interpreter teardown once TensorFlow and Qt were both loaded.

    Their shutdown code frees memory twice ("free(): invalid pointer") after every
    test has already run and been reported; exiting directly keeps pytest's status.
    """
    import os
    import sys

    if "tensorflow" in sys.modules and "qtpy" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status["code"])
