"""`context_check`: does the model's call follow the cell, or the field around it?

The selected cell is cut out by its detector mask, grown by `GROW_PX` pixels so its
rim comes along, and pasted into other surroundings: a blank slide of the field's own
background colour, other cell-free regions of the same image, the package's synthetic
smears (`synthetic.make_smear`) or donor fields of the user's. Each copy is classified
again at the cell's box (moved with the cell when it had to move). A model that reads
the cell keeps its call; one that reads the stain, the red cells or the slide does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.morphology import isotropic_dilation

from ..cells import detect_cells
from ..labels import MORPHOLOGY_CLASSES
from ..model.classify import LoadedModel, classify, load_model
from ..roi import clip_bbox
from ..synthetic import make_smear
from . import placement as pl
from .placement import ContextCheckError

#: The cell's mask is grown by this many pixels (isotropic dilation) before it is moved,
#: so the cell's pale rim, which the detector may miss, moves with it.
GROW_PX = 2
#: Share of the contexts that must keep the call for "the call depends on the cell".
KEEP_SHARE = 0.9
_WHITE_CELL_PARTS = ("nucleus", "cytoplasm", "vacuole")
_WHITE_CELL_CODES = [c for c, name in MORPHOLOGY_CLASSES.items() if name in _WHITE_CELL_PARTS]
IN_PLACE, BLANK, SAME_IMAGE, SAMPLE, DONOR = (
    "in place",
    "blank slide",
    "same image",
    "sample smear",
    "donor",
)

__all__ = ["GROW_PX", "ContextCheck", "ContextCheckError", "ContextImage", "context_check"]


@dataclass(frozen=True)
class ContextImage:
    """One tested image: the cell in some surroundings, and the box classified there."""

    context: str
    kind: str
    image: np.ndarray = field(repr=False)
    bbox: tuple[int, int, int, int]
    context_call: str = ""


@dataclass
class ContextCheck:
    """Result of `context_check`.

    table : one row per context (first: the cell in place) with the call, every class
        probability, P(malignant), ``changed`` (call differs from the in-place call) and
        ``context_call`` (the donor field's own call without the cell, where it has one).
    verdict : one line, "The call depends on the cell: …" or "… on its surroundings: …".
    images : the tested images (`ContextImage`), in table order.
    """

    table: pd.DataFrame
    verdict: str
    images: list[ContextImage]
    depends_on_cell: bool
    notes: list[str] = field(default_factory=list)


def context_check(
    image,
    bbox,
    model=None,
    donors=None,
    n: int = 8,
    *,
    mask=None,
    grow: int = GROW_PX,
    seed: int = 0,
) -> ContextCheck:
    """Classify the cell in `bbox` in place, on a blank slide and in `n` other contexts.

    Parameters
    ----------
    image : 2-D gray, RGB or RGBA field (any dtype).
    bbox : (min_row, min_col, max_row, max_col) of the cell; clipped to the image.
    model : None (the bundled model), a path to a ``.keras`` file or a `LoadedModel`.
    donors : fields to paste the cell into, each of the image's size and channel count
        (crop a region of a larger field first). The cell goes to the same position
        when the donor's own white cells lie outside the model's window there, else to
        the nearest cell-free position. The first `n` are used. Default: up to ``n // 2``
        cell-free regions of the same image, the rest synthetic smears.
    n : number of contexts besides the in-place and blank-slide ones.
    mask : bool (rows, cols) pixels of the cell; default the `detect_cells` mask of the
        detected cell that `bbox` holds.
    grow : pixels the mask is grown by (isotropic dilation) before it is moved.
    seed : first seed of the synthetic smears (the check is deterministic).

    Nothing given is changed: the image, donors and model are only read.
    """
    if int(n) < 0:
        raise ContextCheckError(f"n must be 0 or more contexts, got {n}.")
    if not (model is None or isinstance(model, (str, Path, LoadedModel))):
        raise ContextCheckError(
            f"model must be None (the bundled model), a path to a .keras file or a "
            f"LoadedModel (load_model(path)), got {type(model).__name__}: the check needs "
            "the model's metadata to cut the cell's window as the model sees it."
        )
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    rgb = pl.rgb8(image)
    bbox, note = clip_bbox(bbox, rgb.shape)
    notes = [note] if note else []
    cells = detect_cells(rgb) if mask is None or donors is None else []
    cell_mask = (
        pl.user_mask(mask, rgb.shape)
        if mask is not None
        else pl.mask_of(pl.cell_in_box(rgb, bbox, cells), rgb.shape)
    )
    grown = isotropic_dilation(cell_mask, int(grow)) if grow > 0 else cell_mask
    window = pl.roi_window(bbox, loaded.info.input.margin, rgb.shape)
    blank = np.empty_like(rgb)
    blank[...] = pl.background_colour(rgb)
    contexts = [
        ContextImage(IN_PLACE, IN_PLACE, rgb, bbox),
        ContextImage(BLANK, BLANK, pl.paste(blank, rgb, grown, (0, 0)), bbox),
    ]
    moving = _Moving(rgb, grown, bbox, window, int(grow), loaded)
    if donors is None:
        occupied = pl.cells_mask(cells, rgb.shape, int(grow)) | grown
        contexts += moving.same_image(occupied, int(n) // 2)
        contexts += moving.smears(int(n) - (len(contexts) - 2), int(seed), notes)
        if len(contexts) < int(n) + 2:
            notes.append(f"Only {len(contexts) - 2} of {n} contexts had room for the cell.")
    else:
        contexts += moving.donors(_checked_donors(donors, image)[: int(n)], notes)
    table = _table(contexts, loaded)
    return _verdict(table, contexts, notes)


class _Moving:
    """The cut-out cell and the ways to place it into other surroundings."""

    def __init__(self, rgb, grown, bbox, window, grow, loaded):
        self.rgb, self.grown, self.bbox, self.window = rgb, grown, bbox, window
        self.grow, self.loaded = grow, loaded

    def place(self, kind, name, donor, occupied, notes):
        """The cell pasted into `donor`; `context_call` is the donor's own call without it."""
        context_call = classify(donor, self.loaded).class_name
        offset = pl.placement_in(occupied, self.window)
        if offset is None:
            notes.append(f"{name}: no cell-free place for the cell; pasted at its own position.")
            offset = (0, 0)
        image = pl.paste(donor, self.rgb, self.grown, offset)
        return ContextImage(name, kind, image, pl.shifted(self.bbox, offset), context_call)

    def same_image(self, occupied, k):
        out = []
        for offset in pl.spread(pl.free_offsets(occupied, self.window), k, avoid_zero=True):
            box = pl.shifted(self.bbox, offset)
            name = f"{SAME_IMAGE} @ ({box[0]}, {box[1]})"
            image = pl.paste(self.rgb, self.rgb, self.grown, offset)
            out.append(ContextImage(name, SAME_IMAGE, image, box))
        return out

    def smears(self, k, seed, notes):
        diameter = max(8.0, 2.0 * np.sqrt(np.count_nonzero(self.grown) / np.pi))
        out = []
        for i in range(3 * k):  # a smear whose cells fill the field is skipped
            if len(out) >= k:
                break
            smear = make_smear(seed + i, self.rgb.shape[:2], (1, 2), cell_diameter=diameter)
            cells = np.isin(smear.labels, _WHITE_CELL_CODES)
            occupied = isotropic_dilation(cells, self.grow) if self.grow else cells
            if pl.placement_in(occupied, self.window) is None:
                continue
            out.append(self.place(SAMPLE, f"{SAMPLE} {seed + i}", smear.image, occupied, notes))
        return out

    def donors(self, donors, notes):
        out = []
        for i, donor in enumerate(donors, start=1):
            occupied = pl.cells_mask(detect_cells(donor), donor.shape, self.grow)
            out.append(self.place(DONOR, f"{DONOR} {i}", donor, occupied, notes))
        return out


def _checked_donors(donors, image) -> list[np.ndarray]:
    """Donors as uint8 RGB, each checked against the image's size and channel count."""
    if isinstance(donors, np.ndarray) and donors.ndim == np.ndim(image):
        donors = [donors]
    rows, cols = np.shape(image)[:2]
    out = []
    for i, donor in enumerate(donors, start=1):
        if isinstance(donor, (str, Path)):
            from ..images import read_image

            donor = read_image(donor)
        if np.shape(donor)[:2] != (rows, cols):
            raise ContextCheckError(
                f"Donor {i} is {np.shape(donor)[0]}x{np.shape(donor)[1]} pixels but the image "
                f"is {rows}x{cols}: the cell is pasted at its own position, so a donor must "
                "be the image's size. Crop or resize the donor region first."
            )
        if pl.channels(donor) != pl.channels(image):
            raise ContextCheckError(
                f"Donor {i} has {pl.channels(donor)} channel(s) but the image has "
                f"{pl.channels(image)}: give donors of the same kind (gray, RGB or RGBA)."
            )
        out.append(pl.rgb8(donor))
    return out


def _table(contexts: list[ContextImage], loaded) -> pd.DataFrame:
    rows = []
    for context in contexts:
        result = classify(context.image, loaded, bbox=context.bbox)
        rows.append(
            {
                "context": context.context,
                "kind": context.kind,
                "bbox": tuple(int(v) for v in context.bbox),
                "class": result.class_name,
                **{f"P({k})": v for k, v in result.probabilities.items()},
                "P(malignant)": result.malignant_probability,
                "context_call": context.context_call,
            }
        )
    table = pd.DataFrame(rows)
    changed = table["class"] != rows[0]["class"]
    table.insert(table.columns.get_loc("context_call"), "changed", changed)
    return table


def _verdict(table: pd.DataFrame, contexts, notes) -> ContextCheck:
    call = table["class"].iloc[0]
    moved = table.iloc[1:]
    kept = int((~moved["changed"]).sum())
    blank_kept = not bool(moved.loc[moved["kind"] == BLANK, "changed"].any())
    depends = len(moved) > 0 and kept >= KEEP_SHARE * len(moved) and blank_kept
    where = "the cell" if depends else "its surroundings"
    detail = f"{call} kept in {kept} of {len(moved)} contexts"
    if not blank_kept:
        detail += " (changed on a blank slide)"
    verdict = f"The call depends on {where}: {detail}."
    return ContextCheck(table, verdict, contexts, depends, notes)
