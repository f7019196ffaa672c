"""Training and label files never destroy what a user already has (issue 14).

Real TensorFlow on a tiny made-up dataset (2 classes x 10 small PNGs); Ctrl+C is a real
SIGINT sent by the training process to itself at a chosen epoch, through the real CLI.
"""

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr
from skimage import io

from napari_leukemia import safe_files
from napari_leukemia.cli import main
from napari_leukemia.labels import (
    LabelsError,
    load_labels,
    read_labels_zarr,
    save_labels,
    write_labels_zarr,
)
from napari_leukemia.model.metadata import file_sha256, read_info

QUICK = ["--arch", "seed004", "--batch-size", "8", "--patience", "2", "--max-minutes", "5"]


def _write_class(folder: Path, n: int, level: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        noise = rng.integers(0, 90, (32, 32, 3))
        io.imsave(folder / f"img_{i:02d}.png", (noise + level).astype(np.uint8))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Two classes (dark Benign, bright Pro) of ten distinct 32x32 RGB noise images."""
    root = tmp_path_factory.mktemp("tiny_data")
    _write_class(root / "Benign", 10, 20, seed=1)
    _write_class(root / "Pro", 10, 150, seed=2)
    return root


@pytest.fixture(scope="module")
def old_model(tiny_data, tmp_path_factory) -> Path:
    """A model trained once; tests copy it and check their copy is byte-identical after."""
    out = tmp_path_factory.mktemp("old") / "old.keras"
    assert main(["train", str(tiny_data), "--out", str(out), "--epochs", "1", *QUICK]) == 0
    return out


@pytest.fixture
def model_dir(old_model, tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A folder holding a copy of the old model and its metadata, and their bytes."""
    folder = tmp_path / "models"
    folder.mkdir()
    files = {}
    for path in (old_model, old_model.with_suffix(".json")):
        files[path.name] = path.read_bytes()
        (folder / path.name).write_bytes(files[path.name])
    return folder, files


def _unchanged(folder: Path, files: dict[str, bytes]) -> None:
    """Exactly the old files are there (no temporary files), with their old bytes."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name


CTRL_C = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from napari_leukemia.model import training

    where, epoch = sys.argv[1], int(sys.argv[2])
    real_callbacks, real_save = training._callbacks, keras.Model.save

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            self.index = index

        def on_train_batch_end(self, batch, logs=None):
            if self.index == epoch:
                os.kill(os.getpid(), signal.SIGINT)

    def callbacks(patience, max_minutes):
        keep, found = real_callbacks(patience, max_minutes)
        return keep, [CtrlC(), *found]

    def save(self, path, *args, **kwargs):
        real_save(self, path, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)

    training._callbacks = callbacks
    if where == "save":
        keras.Model.save = save
    from napari_leukemia.cli import main
    sys.exit(main(sys.argv[3:]))
    """
)


def _train_with_ctrl_c(tmp_path, where: str, epoch: int, args: list[str]):
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C)
    command = [sys.executable, str(script), where, str(epoch), "train", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


# --------------------------------------------------------------------------- finding 1


def test_ctrl_c_in_first_epoch_keeps_old_model_and_exits_130(tiny_data, model_dir, tmp_path):
    folder, files = model_dir
    out = folder / "old.keras"
    args = [str(tiny_data), "--out", str(out), "--overwrite", "--epochs", "3", *QUICK]
    result = _train_with_ctrl_c(tmp_path, "fit", 0, args)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "interrupted before its first epoch finished" in result.stderr
    assert f"nothing was saved and the existing {out} was not touched" in result.stderr
    assert "Saved" not in result.stdout
    _unchanged(folder, files)


# --------------------------------------------------------------------------- finding 2


def test_second_ctrl_c_while_saving_keeps_old_model(tiny_data, model_dir, tmp_path):
    folder, files = model_dir
    out = folder / "old.keras"
    args = [str(tiny_data), "--out", str(out), "--overwrite", "--epochs", "3", *QUICK]
    result = _train_with_ctrl_c(tmp_path, "save", 1, args)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Interrupted: saving the best model so far (epoch 1)." in result.stdout
    assert f"interrupted; nothing was saved and any existing {out}" in result.stderr
    _unchanged(folder, files)


def test_disk_full_while_saving_keeps_old_model(tiny_data, model_dir, monkeypatch, capsys):
    import keras

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 16384)  # what fitted before the disk was full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    folder, files = model_dir
    out = folder / "old.keras"
    code = main(
        ["train", str(tiny_data), "--out", str(out), "--overwrite", "--epochs", "1", *QUICK]
    )
    assert code == 1
    assert "No space left on device" in capsys.readouterr().err
    _unchanged(folder, files)


def test_failed_metadata_write_keeps_old_model(tiny_data, model_dir, monkeypatch):
    real_write_text = Path.write_text

    def broken(self, text, *args, **kwargs):
        if self.suffix == ".json":
            real_write_text(self, text[: len(text) // 2])
            raise OSError(errno.EIO, "Input/output error")
        return real_write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", broken)
    folder, files = model_dir
    out = folder / "old.keras"
    code = main(
        ["train", str(tiny_data), "--out", str(out), "--overwrite", "--epochs", "1", *QUICK]
    )
    assert code == 1
    _unchanged(folder, files)


def test_overwrite_replaces_model_and_metadata_together(tiny_data, model_dir):
    folder, files = model_dir
    out = folder / "old.keras"
    code = main(
        ["train", str(tiny_data), "--out", str(out), "--overwrite", "--epochs", "2", *QUICK]
    )
    assert code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["old.json", "old.keras"]
    assert out.read_bytes() != files["old.keras"]
    assert read_info(out).sha256 == file_sha256(out)
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_interrupt_is_held_until_the_renames_are_done():
    done = []
    with pytest.raises(KeyboardInterrupt), safe_files.deferred_interrupt():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("after the signal")
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --------------------------------------------------------------------------- finding 3


def test_users_json_beside_out_is_refused_without_overwrite(tiny_data, tmp_path, capsys):
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    code = main(["train", str(tiny_data), "--out", str(tmp_path / "notes.keras"), *QUICK])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{notes} exists" in err and "--overwrite" in err
    assert notes.read_text() == '{"my": "notes"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.json"]


# --------------------------------------------------------------------------- finding 11


def test_single_class_is_refused(tmp_path, capsys):
    _write_class(tmp_path / "data" / "Benign", 10, 20, seed=3)
    out = tmp_path / "m.keras"
    assert main(["train", str(tmp_path / "data"), "--out", str(out), *QUICK]) == 2
    err = capsys.readouterr().err
    assert "images of 1 class (Benign)" in err and "at least 2 class folders" in err
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize("epochs", ["0", "-3"])
def test_zero_or_negative_epochs_are_refused(tiny_data, model_dir, epochs, capsys):
    folder, files = model_dir
    out = folder / "old.keras"
    args = ["train", str(tiny_data), "--out", str(out), "--overwrite", *QUICK]
    assert main([*args, f"--epochs={epochs}"]) == 2
    err = capsys.readouterr().err
    assert f"The epochs must be a whole number of at least 1, got {epochs}." in err
    _unchanged(folder, files)


# --------------------------------------------------------------------------- finding 5


def test_save_labels_leaves_a_users_partial_file_alone(tmp_path):
    mine = tmp_path / ".m.png.partial"
    mine.write_bytes(b"my own file")
    path = tmp_path / "m.png"
    save_labels(path, np.full((4, 5), 2, np.uint8))
    save_labels(path, np.full((4, 5), 3, np.uint8), overwrite=True)
    assert mine.read_bytes() == b"my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.png.partial", "m.png"]
    assert (load_labels(path)[0] == 3).all()


def test_failed_label_save_keeps_the_old_file(tmp_path, monkeypatch):
    from PIL import Image

    path = save_labels(tmp_path / "m.png", np.full((4, 5), 2, np.uint8))
    before = path.read_bytes()

    def broken(self, fp, *args, **kwargs):
        Path(fp).write_bytes(before[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", broken)
    with pytest.raises(OSError, match="No space left"):
        save_labels(path, np.full((4, 5), 3, np.uint8), overwrite=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


# --------------------------------------------------------------------------- finding 4


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with img/raw, img/maps and img/labels (values 0..5, custom name for 3)."""
    path = tmp_path / "results.zarr"
    root = zarr.open_group(str(path), mode="a")
    for name, value in (("raw", 7), ("maps", 9)):
        root.create_array(f"img/{name}", shape=(6, 7), dtype="uint8", chunks=(6, 7))[...] = value
    write_labels_zarr(path, "img/labels", _old_labels(), {3: "vacuole (clear)"})
    return path


def _old_labels() -> np.ndarray:
    return np.arange(42, dtype=np.uint16).reshape(6, 7) % 6


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _store_unchanged(store: Path, tree: list[str]) -> None:
    assert _tree(store) == tree  # no temporary arrays left behind
    labels, names = read_labels_zarr(store, "img/labels")
    assert np.array_equal(labels, _old_labels()) and labels.dtype == np.uint16
    assert names[3] == "vacuole (clear)"
    for name, value in (("raw", 7), ("maps", 9)):
        assert (read_labels_zarr(store, f"img/{name}")[0] == value).all()


def test_zarr_write_failure_keeps_the_old_array(store, monkeypatch):
    tree = _tree(store)

    def broken(self, selection, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", broken)
    with pytest.raises(OSError, match="No space left"):
        write_labels_zarr(store, "img/labels", np.ones((3, 3), np.uint8), overwrite=True)
    monkeypatch.undo()
    _store_unchanged(store, tree)


@pytest.mark.parametrize(
    ("names", "chunks", "message"),
    [({"one": "nucleus"}, None, "names must map label values"), (None, (0, 2), "chunks must")],
)
def test_zarr_invalid_arguments_are_refused_before_writing(store, names, chunks, message):
    tree = _tree(store)
    with pytest.raises(LabelsError, match=message):
        write_labels_zarr(
            store, "img/labels", np.ones((3, 3), np.uint8), names, overwrite=True, chunks=chunks
        )
    _store_unchanged(store, tree)


def test_zarr_group_path_is_refused(store):
    tree = _tree(store)
    with pytest.raises(LabelsError, match=r"'img' is a group .* such as 'img/labels'"):
        write_labels_zarr(store, "img", np.ones((3, 3), np.uint8), overwrite=True)
    with pytest.raises(LabelsError, match="'img/raw' is an array"):
        write_labels_zarr(store, "img/raw/labels", np.ones((3, 3), np.uint8), overwrite=True)
    _store_unchanged(store, tree)


def test_zarr_folder_that_is_not_an_array_is_refused(store):
    notes = store / "img" / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    with pytest.raises(LabelsError, match="is not a Zarr array"):
        write_labels_zarr(store, "img/notes", np.ones((3, 3), np.uint8), overwrite=True)
    assert (notes / "todo.txt").read_text() == "mine"


def test_zarr_overwrite_swaps_in_the_new_array(store):
    tree = _tree(store)
    new = np.full((3, 4), 2, np.uint8)
    written = write_labels_zarr(store, "img/labels", new, {2: "cyto"}, overwrite=True)
    assert written.shape == (3, 4)
    labels, names = read_labels_zarr(store, "img/labels")
    assert np.array_equal(labels, new) and labels.dtype == np.uint8 and names == {2: "cyto"}
    for name, value in (("raw", 7), ("maps", 9)):
        assert (read_labels_zarr(store, f"img/{name}")[0] == value).all()
    assert not [p for p in _tree(store) if "/." in p or p.startswith(".")]
    assert {p.split("/")[1] for p in _tree(store) if "/" in p} == {
        p.split("/")[1] for p in tree if "/" in p
    }


# --------------------------------------------------------------------------- finding 16, 18


def test_missing_zarr_chunk_is_refused_not_read_as_zeros(tmp_path):
    store = tmp_path / "results.zarr"
    labels = np.zeros((40, 50), np.uint8)  # mostly unlabelled: most chunks are all 0
    labels[2:8, 3:9] = 1
    write_labels_zarr(store, "img/labels", labels, chunks=(16, 16))
    chunk_files = [p for p in (store / "img" / "labels").rglob("*") if p.is_file()]
    assert len(chunk_files) == 1 + 3 * 4  # zarr.json + every chunk, all-0 ones included
    read, _ = read_labels_zarr(store, "img/labels")
    assert np.array_equal(read, labels)
    (store / "img" / "labels" / "c" / "0" / "0").unlink()  # the chunk with the nucleus
    with pytest.raises(LabelsError, match=r"img/labels is damaged: 1 of its 12 chunks are miss"):
        read_labels_zarr(store, "img/labels")


def test_zarr_arrays_from_other_tools_keep_zarr_fill_semantics(tmp_path):
    store = tmp_path / "other.zarr"
    root = zarr.open_group(str(store), mode="a")
    array = root.create_array("labels", shape=(20, 20), dtype="uint8", chunks=(10, 10))
    array[:10, :10] = 3  # the other chunks are all 0 and, by Zarr's default, not stored
    read, _ = read_labels_zarr(store, "labels")
    assert read.sum() == 3 * 100


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("zarr.json", r"results.zarr is damaged: its metadata \(zarr.json\) is unreadable"),
        ("img/labels/zarr.json", r"img/labels is damaged: its metadata is unreadable"),
        ("img/labels/c/0/0", r"img/labels is damaged: a chunk cannot be decoded"),
    ],
)
def test_damaged_zarr_store_gets_a_message_naming_it(store, damage, message):
    target = store / damage
    target.write_bytes(target.read_bytes()[:7])  # an interrupted copy
    with pytest.raises(LabelsError, match=message) as info:
        read_labels_zarr(store, "img/labels")
    assert "Restore the store from a backup" in str(info.value)


def test_zarr_group_or_missing_store_named_on_read(store, tmp_path):
    with pytest.raises(LabelsError, match=r"img is a group holding \['labels', 'maps', 'raw'\]"):
        read_labels_zarr(store, "img")
    with pytest.raises(FileNotFoundError, match="No Zarr store at"):
        read_labels_zarr(tmp_path / "nowhere.zarr", "img/labels")


# --------------------------------------------------------------------------- other writers


def _users_partial(folder: Path, name: str) -> Path:
    """A user's own file with the temporary name older writers used and then deleted."""
    mine = folder / f".{name}.partial"
    mine.write_bytes(b"my own file")
    return mine


def test_model_metadata_write_is_atomic(tmp_path, monkeypatch):
    from napari_leukemia.model.metadata import ModelInfo, write_info

    model = tmp_path / "m.keras"
    model.write_bytes(b"model bytes")
    path = write_info(model, ModelInfo(command="first"))
    before = path.read_bytes()
    real_write_text = Path.write_text

    def broken(self, text, *args, **kwargs):
        real_write_text(self, text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(OSError, match="No space left"):
        write_info(model, ModelInfo(command="second"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras"]
    assert read_info(model).command == "first"


def test_write_samples_keeps_users_files_and_old_samples_on_failure(tmp_path, monkeypatch):
    from napari_leukemia import synthetic

    mine = _users_partial(tmp_path, "smear_224.png")
    written = synthetic.write_samples(tmp_path)
    assert mine.read_bytes() == b"my own file"
    before = {p.name: p.read_bytes() for p in written}
    calls = []
    real = synthetic.sample_smear

    def fails_second(name, seed=None):
        calls.append(name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(name, seed)

    monkeypatch.setattr(synthetic, "sample_smear", fails_second)
    with pytest.raises(OSError, match="No space left"):
        synthetic.write_samples(tmp_path, seed=5, overwrite=True)
    assert {p.name: p.read_bytes() for p in written} == before  # all or nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, mine.name])
    assert mine.read_bytes() == b"my own file"


def test_overlap_csv_save_leaves_a_users_partial_file_alone(qtbot, tmp_path):
    from napari_leukemia._widgets.overlap_widget import OverlapTablePanel
    from napari_leukemia.quantify import quantify_maps

    labels = np.repeat(np.arange(1, 4, dtype=np.uint8), 4).reshape(3, 4)
    table, _, _ = quantify_maps({"m": (np.arange(12.0).reshape(3, 4), None)}, labels)
    panel = OverlapTablePanel()
    qtbot.addWidget(panel)
    panel.frame = table  # what the widget shows; save_csv writes it at full precision
    mine = _users_partial(tmp_path, "overlap.csv")
    path = tmp_path / "overlap.csv"
    panel.save_csv(path)
    panel.save_csv(path, overwrite=True)
    assert mine.read_bytes() == b"my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "overlap.csv"]
    assert path.read_text().startswith("map,label,name")
