"""Tests of the relevance-vs-labels quantification core (napari_leukemia.quantify)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_leukemia.labels import MORPHOLOGY_CLASSES
from napari_leukemia.quantify import (
    METRICS,
    QuantifyError,
    QuantifyWarning,
    quantify,
    quantify_many,
    relevant_mask,
    summarize,
)
from napari_leukemia.roi import RoiTransform
from napari_leukemia.synthetic import make_smear


@pytest.fixture(scope="module")
def smear():
    return make_smear(seed=3, shape=(96, 128), n_leukocytes=2, cell_diameter=30.0)


def smooth_map(shape, seed=0):
    """A tie-free signed map with some spatial structure."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    return (
        np.sin(rows / 7.0) * np.cos(cols / 5.0)
        + 0.3 * rng.standard_normal(shape)
        + 1e-9 * np.arange(rows.size).reshape(shape)
    )


def reference(relevance, labels, threshold_value, sign="positive"):
    """Direct, loop-per-label implementation of the metric definitions."""
    r = np.asarray(relevance, float)
    r = {"positive": np.maximum(r, 0), "absolute": np.abs(r), "signed": r}[sign]
    flat, lab = r.ravel(), np.asarray(labels).ravel()
    relevant = flat > threshold_value
    order = np.argsort(-flat, kind="stable")
    rows = {}
    for v in np.unique(lab[lab != 0]):
        inside = lab == v
        k = int(inside.sum())
        rows[int(v)] = {
            "pixels": k,
            "relevant_pixels": int((relevant & inside).sum()),
            "relevant_fraction": (relevant & inside).sum() / max(relevant.sum(), 1),
            "relevance_mass": flat[inside].sum() / flat.sum(),
            "rank_accuracy": inside[order[:k]].mean(),
            "pointing_game": bool(inside[np.argmax(flat)]),
        }
    return rows


# --------------------------------------------------------------------------- analytic cases


def test_nucleus_indicator_puts_all_relevance_in_nucleus(smear):
    relevance = (smear.labels == 1).astype(float)
    table = quantify(relevance, smear.labels)
    nuc = table.set_index("name").loc["nucleus"]
    assert nuc.relevance_mass == pytest.approx(1.0)
    assert nuc.relevant_fraction == pytest.approx(1.0)
    assert nuc.rank_accuracy == pytest.approx(1.0)
    assert nuc.relevance_density == pytest.approx(1.0 / nuc.area_fraction)
    assert bool(nuc.pointing_game)
    others = table[table.name != "nucleus"]
    assert np.allclose(others[["relevance_mass", "relevant_fraction"]], 0.0)
    assert not others.pointing_game.any()
    # Their top-K holds every nucleus pixel first, then a fair share of the zero ties.
    slots = np.maximum(others.pixels - nuc.pixels, 0)
    share = others.pixels / (smear.labels.size - nuc.pixels)
    assert np.allclose(others.rank_accuracy, slots * share / others.pixels)
    assert table.defined.all()


def test_uniform_map_gives_mass_proportional_to_area(smear):
    with pytest.warns(QuantifyWarning, match="constant"):
        table = quantify(np.full(smear.labels.shape, 0.7), smear.labels)
    assert np.allclose(table.relevance_mass, table.pixels / smear.labels.size)
    assert np.allclose(table.relevance_density, 1.0)
    assert np.allclose(table.rank_accuracy, table.area_fraction)  # ties shared
    assert not table.pointing_game.any()
    assert not table.defined.any()
    assert not table.isna().any().any()


def test_mean_threshold_counts_equal_a_direct_count(smear):
    relevance = smooth_map(smear.labels.shape, seed=1)
    table = quantify(relevance, smear.labels, threshold="mean")
    clipped = np.maximum(relevance, 0)
    relevant = clipped > clipped.mean()  # document 003: above the mean of the map
    for row in table.itertuples():
        assert row.relevant_pixels == np.count_nonzero(relevant & (smear.labels == row.label))
    assert table.attrs["relevant_pixels_total"] == relevant.sum()
    assert table.relevant_fraction.sum() == pytest.approx(1.0)
    assert table.attrs["threshold"] == pytest.approx(clipped.mean())


@pytest.mark.parametrize("sign", ["positive", "absolute", "signed"])
def test_matches_the_direct_definitions(smear, sign):
    relevance = smooth_map(smear.labels.shape, seed=2)
    table = quantify(relevance, smear.labels, sign=sign).set_index("label")
    ref = reference(relevance, smear.labels, table.attrs["threshold"], sign)
    assert sorted(ref) == list(table.index)
    for value, expected in ref.items():
        for key, want in expected.items():
            assert table.loc[value, key] == pytest.approx(want), (sign, value, key)


def test_names_default_to_morphology_classes_and_unknown_values(smear):
    labels = smear.labels.astype(np.int32)
    labels[:3, :3] = 9
    table = quantify(smooth_map(labels.shape), labels)
    names = dict(zip(table.label, table.name, strict=True))
    assert names[9] == "label 9"
    assert all(names[v] == MORPHOLOGY_CLASSES[v] for v in names if v != 9)
    custom = quantify(smooth_map(labels.shape), labels, {9: "scale bar", 1: "kern"})
    assert dict(zip(custom.label, custom.name, strict=True))[9] == "scale bar"
    assert dict(zip(custom.label, custom.name, strict=True))[1] == "kern"


def test_unlabelled_pixels_get_no_row_but_stay_in_denominators():
    labels = np.zeros((10, 10), np.uint8)
    labels[:5] = 1
    relevance = np.ones((10, 10))
    relevance[:5] = 3.0  # 3*50 / (3*50 + 50)
    table = quantify(relevance, labels)
    assert list(table.label) == [1]
    assert table.relevance_mass.iloc[0] == pytest.approx(0.75)
    assert table.attrs["unlabelled_relevance_mass"] == pytest.approx(0.25)
    assert table.relevance_density.iloc[0] == pytest.approx(1.5)


def test_pointing_game_with_tied_maxima_counts_any_maximum():
    labels = np.array([[1, 1, 2, 2]])
    table = quantify(np.array([[5.0, 0.0, 5.0, 1.0]]), labels)
    assert table.pointing_game.tolist() == [True, True]


def test_rank_accuracy_shares_tied_pixels():
    labels = np.array([[1, 1, 2, 2, 2, 2]])
    # K = 2 for label 1: one pixel (9) is above, the 2nd place is a 4-way tie at 1.0.
    relevance = np.array([[9.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    table = quantify(relevance, labels).set_index("label")
    assert table.loc[1, "rank_accuracy"] == pytest.approx((1 + 1 * 1 / 4) / 2)


def tied_rank_accuracy(flat, lab, value):
    """Rank accuracy of one label straight from its definition, ties shared in proportion."""
    inside = lab == value
    k = int(inside.sum())
    v_k = np.sort(flat)[::-1][k - 1]
    above, tied = flat > v_k, flat == v_k
    share = (tied & inside).sum() / tied.sum()
    return ((above & inside).sum() + (k - above.sum()) * share) / k


@pytest.mark.parametrize("n_labels", [5, 400])  # few and many distinct sizes (#21)
def test_rank_accuracy_with_ties_for_few_and_many_label_sizes(n_labels):
    rng = np.random.default_rng(n_labels)
    shape = (90, 120)
    labels = np.zeros(shape, np.int32)  # irregular regions of many different sizes
    labels.flat[rng.choice(labels.size, n_labels, replace=False)] = np.arange(1, n_labels + 1)
    from scipy import ndimage as ndi

    _, (r, c) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    labels = labels[r, c]
    labels[:, :7] = 0  # some unlabelled pixels
    relevance = np.round(rng.standard_normal(shape), 1)  # ties, and clipped zeros
    table = quantify(relevance, labels).set_index("label")
    flat, lab = np.maximum(relevance, 0).ravel(), labels.ravel()
    sizes = np.unique(np.bincount(lab)[1:])
    assert (sizes.size > 64) == (n_labels > 64)  # both code paths are exercised
    for value in table.index:
        want = tied_rank_accuracy(flat, lab, value)
        assert table.loc[value, "rank_accuracy"] == pytest.approx(want, rel=1e-12), value


@pytest.mark.parametrize("exponent", [1000, -1000, -1070])
def test_maps_near_overflow_or_subnormal_give_the_same_table(smear, exponent):
    """Maps near 1e308 or in the subnormal range: no NaN, same table as the unit map (#16)."""
    relevance = np.round(smooth_map(smear.labels.shape, seed=5), 2)  # exact in 2**-1070 steps
    extreme = np.ldexp(relevance, exponent)  # exact power-of-two scaling
    if exponent == -1070:
        assert np.all(np.abs(extreme[extreme != 0]) < np.finfo(float).tiny)  # subnormal
        relevance = np.ldexp(extreme, -exponent)  # the unit map those subnormals hold
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings either
        for threshold in ("mean", "percentile:80", "topk:50", "otsu", "topk:100000"):
            for sign in ("positive", "signed"):
                base = quantify(relevance, smear.labels, threshold=threshold, sign=sign)
                big = quantify(extreme, smear.labels, threshold=threshold, sign=sign)
                assert big.defined.all() and not big.isna().any().any()
                pd.testing.assert_frame_equal(base, big, check_exact=True)
                if threshold != "topk:100000" and exponent != -1070:
                    want = np.ldexp(base.attrs["threshold"], exponent)
                    assert big.attrs["threshold"] == want


@pytest.mark.parametrize("threshold", ["mean", "percentile:80", "topk:50", "otsu"])
@pytest.mark.parametrize("sign", ["positive", "absolute", "signed"])
def test_invariant_to_positive_scaling(smear, threshold, sign):
    relevance = smooth_map(smear.labels.shape, seed=4)
    base = quantify(relevance, smear.labels, threshold=threshold, sign=sign)
    for factor in (1e-6, 3.0, 1e6):
        scaled = quantify(relevance * factor, smear.labels, threshold=threshold, sign=sign)
        pd.testing.assert_frame_equal(base, scaled, check_exact=False, rtol=1e-9)


def test_threshold_rules(smear):
    relevance = smooth_map(smear.labels.shape, seed=5)
    clipped = np.maximum(relevance, 0)
    top = quantify(relevance, smear.labels, threshold="topk:100")
    assert top.relevant_pixels.sum() == 100
    pct = quantify(relevance, smear.labels, threshold="percentile:90")
    assert pct.relevant_pixels.sum() == np.count_nonzero(clipped > np.percentile(clipped, 90))
    number = quantify(relevance, smear.labels, threshold=0.5)
    assert number.relevant_pixels.sum() == np.count_nonzero(clipped > 0.5)
    otsu = quantify(relevance, smear.labels, threshold="otsu")
    assert 0 < otsu.relevant_pixels.sum() < clipped.size
    assert np.array_equal(
        relevant_mask(relevance, "percentile:90"), clipped > np.percentile(clipped, 90)
    )


def test_signed_map_can_have_negative_mass():
    labels = np.array([[1, 1, 2, 2]])
    relevance = np.array([[3.0, 1.0, -1.0, 0.0]])
    signed = quantify(relevance, labels, sign="signed").set_index("label")
    assert signed.loc[2, "relevance_mass"] == pytest.approx(-1 / 3)
    assert signed.attrs["threshold"] == pytest.approx(0.75)  # signed mean
    positive = quantify(relevance, labels).set_index("label")
    assert positive.loc[2, "relevance_mass"] == 0.0
    absolute = quantify(relevance, labels, sign="absolute").set_index("label")
    assert absolute.loc[2, "relevance_mass"] == pytest.approx(0.2)


# --------------------------------------------------------------------------- geometry


def test_roi_transform_places_the_map_on_the_labelled_image():
    labels = np.full((100, 120), 5, np.uint8)
    labels[40:60, 50:70] = 1
    transform = RoiTransform(origin=(30.0, 40.0), scale=(2.0, 2.0), image_shape=(100, 120))
    # ROI pixel (r, c) covers image rows 30+2r..31+2r: nucleus = ROI rows 5..14, cols 5..14.
    roi_map = np.zeros((20, 20))
    roi_map[5:15, 5:15] = 1.0
    table = quantify(roi_map, labels, transform=transform).set_index("label")
    assert table.loc[1, "relevance_mass"] == pytest.approx(1.0)
    assert table.loc[1, "pixels"] == 100  # counted on the map's grid
    from_dict = quantify(roi_map, labels, transform=transform.as_dict())
    pd.testing.assert_frame_equal(table.reset_index(), from_dict)


def test_roi_outside_the_image_is_unlabelled():
    labels = np.ones((10, 10), np.uint8)
    transform = RoiTransform(origin=(-5.0, -5.0), scale=(1.0, 1.0), image_shape=(10, 10))
    table = quantify(np.ones((10, 10)) + np.eye(10), labels, transform=transform)
    assert table.pixels.tolist() == [25]  # only the quarter inside the image


def test_resample_labels_and_map():
    labels = np.zeros((8, 8), np.uint8)
    labels[:4] = 1
    labels[4:] = 2
    small = np.array([[1.0, 1.0], [0.0, 0.0]]) + 1e-3
    by_labels = quantify(small, labels, resample="labels").set_index("label")
    assert by_labels.loc[1, "pixels"] == 2
    assert by_labels.loc[1, "relevance_mass"] == pytest.approx(1.001 / 1.002 / 1.0, rel=1e-3)
    by_map = quantify(small, labels, resample="map").set_index("label")
    assert by_map.loc[1, "pixels"] == 32
    assert by_map.loc[1, "relevance_mass"] > 0.7


# --------------------------------------------------------------------------- bad input


def test_empty_labels_give_an_empty_table_and_a_message():
    with pytest.warns(QuantifyWarning, match="labels are empty"):
        table = quantify(np.random.default_rng(0).random((5, 5)), np.zeros((5, 5), int))
    assert table.empty
    assert {"label", "name", "relevance_mass", "rank_accuracy"} <= set(table.columns)


@pytest.mark.parametrize("value", [0.0, -2.0])
def test_all_zero_map_is_undefined_not_nan(smear, value):
    with pytest.warns(QuantifyWarning, match="all zero"):
        table = quantify(np.full(smear.labels.shape, value), smear.labels)
    assert not table.defined.any()
    assert not table.isna().any().any()
    assert (table[["relevance_mass", "relevance_density", "rank_accuracy"]] == 0).all().all()


def test_all_negative_map_is_undefined_after_clipping(smear):
    relevance = -1.0 - np.random.default_rng(1).random(smear.labels.shape)
    with pytest.warns(QuantifyWarning, match="clipping negative"):
        table = quantify(relevance, smear.labels)
    assert not table.defined.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quantify(relevance, smear.labels, sign="absolute").defined.all()


def test_float_labels_are_refused_with_a_hint(smear):
    with pytest.raises(QuantifyError, match="dtype float64.*astype"):
        quantify(smooth_map(smear.labels.shape), smear.labels.astype(float))
    with pytest.raises(QuantifyError, match="not whole numbers"):
        quantify(np.ones((2, 2)), np.array([[0.5, 1.0], [1.0, 2.0]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_map(bad):
    relevance = np.ones((4, 4))
    relevance[1, 2] = bad
    with pytest.raises(QuantifyError, match="NaN|infinite"):
        quantify(relevance, np.ones((4, 4), int))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(QuantifyError, match=r"\(4, 5\).*\(6, 7\)"):
        quantify(np.ones((4, 5)), np.ones((6, 7), int))


def test_labels_from_a_different_image_are_refused():
    transform = RoiTransform(origin=(0.0, 0.0), scale=(2.0, 2.0), image_shape=(50, 50))
    with pytest.raises(QuantifyError, match=r"different image.*\(40, 40\)|\(40, 40\).*different"):
        quantify(np.ones((10, 10)), np.ones((40, 40), int), transform=transform)


@pytest.mark.parametrize(
    ("relevance", "labels", "kwargs", "match"),
    [
        (np.ones((4, 4, 3)), np.ones((4, 4), int), {}, "colour channels"),
        (np.ones((2, 5, 5)), np.ones((5, 5), int), {}, "2-D map"),
        (np.ones((4, 4)), np.ones((4, 4), int), {"threshold": "median"}, "Unknown threshold"),
        (np.ones((4, 4)), np.ones((4, 4), int), {"threshold": "percentile:120"}, r"\[0, 100\]"),
        (np.ones((4, 4)), np.ones((4, 4), int), {"threshold": "topk:0"}, "N >= 1"),
        (np.ones((4, 4)), np.ones((4, 4), int), {"sign": "negative"}, "sign must be"),
        (np.ones((4, 4)), -np.ones((4, 4), int), {}, "negative values"),
        (np.ones((4, 4)), np.ones((5, 4), int), {"resample": "cubic"}, "resample must be"),
        (np.ones((4, 4)), np.ones((4, 4), int), {"transform": [1, 2]}, "RoiTransform"),
    ],
)
def test_bad_inputs_get_clear_errors(relevance, labels, kwargs, match):
    with pytest.raises(QuantifyError, match=match):
        quantify(relevance, labels, **kwargs)


def test_inputs_are_not_modified(smear):
    relevance = smooth_map(smear.labels.shape)
    labels = smear.labels.copy()
    before = relevance.copy()
    quantify(relevance, labels, sign="positive")
    assert np.array_equal(relevance, before)
    assert np.array_equal(labels, smear.labels)


# --------------------------------------------------------------------------- many maps


def test_quantify_many_and_summarize(smear):
    items = []
    for method, shift in (("gradient", 0), ("grad_cam", 10)):
        for image in ("a", "b"):
            relevance = smooth_map(smear.labels.shape, seed=shift + ord(image))
            items.append(
                {
                    "method": method,
                    "image": image,
                    "model": "m1",
                    "relevance": relevance,
                    "labels": smear.labels,
                }
            )
    long = quantify_many(items)
    n_labels = len(np.unique(smear.labels))
    assert len(long) == 4 * n_labels
    assert list(long.columns[:3]) == ["method", "image", "model"]
    summary = summarize(long)
    assert len(summary) == 2 * n_labels
    row = summary[(summary.method == "gradient") & (summary.label == 1)].iloc[0]
    part = long[(long.method == "gradient") & (long.label == 1)]
    assert row["n"] == 2
    assert row["relevance_mass_mean"] == pytest.approx(part.relevance_mass.mean())
    assert row["relevance_mass_sd"] == pytest.approx(part.relevance_mass.std(ddof=1))
    assert row["pointing_game_mean"] == pytest.approx(part.pointing_game.mean())
    assert {f"{m}_{s}" for m in METRICS for s in ("mean", "sd")} <= set(summary.columns)


def test_quantify_many_reports_undefined_maps_once_and_summary_skips_them(smear):
    good = smooth_map(smear.labels.shape)
    items = [
        {
            "method": "deep_taylor",
            "image": i,
            "relevance": np.zeros(smear.labels.shape),
            "labels": smear.labels,
        }
        for i in range(3)
    ] + [{"method": "deep_taylor", "image": 9, "relevance": good, "labels": smear.labels}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        long = quantify_many(items)
    messages = [str(w.message) for w in caught if issubclass(w.category, QuantifyWarning)]
    assert len(messages) == 1 and "3 undefined" in messages[0]
    summary = summarize(long, by="method")
    assert (summary.n == 1).all() and (summary.n_undefined == 3).all()
    assert (summary.filter(like="_sd") == 0).all().all()  # one defined map: sd 0
    assert not summary.isna().any().any()


def test_quantify_many_names_the_failing_item(smear):
    items = [{"method": "x", "image": "bad", "relevance": np.ones((3, 3)), "labels": smear.labels}]
    with pytest.raises(QuantifyError, match="method=x, image=bad"):
        quantify_many(items)
    with pytest.raises(QuantifyError, match="lacks"):
        quantify_many([{"relevance": np.ones((3, 3))}])


def test_summarize_checks_columns():
    with pytest.raises(QuantifyError, match="lacks columns"):
        summarize(pd.DataFrame({"label": [1]}))


# --------------------------------------------------------------------------- properties

maps = hnp.arrays(
    np.float64,
    st.tuples(st.integers(2, 12), st.integers(2, 12)),
    elements=st.floats(-5, 5, allow_nan=False, width=32),
)


@settings(max_examples=60, deadline=None)
@given(
    relevance=maps,
    data=st.data(),
    threshold=st.sampled_from(["mean", "percentile:50", "topk:3", "otsu"]),
    sign=st.sampled_from(["positive", "absolute"]),
)
def test_fractions_lie_in_unit_interval_and_sum_to_one(relevance, data, threshold, sign):
    labels = data.draw(
        hnp.arrays(np.uint8, relevance.shape, elements=st.integers(1, 4)), label="labels"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantifyWarning)
        table = quantify(relevance, labels, threshold=threshold, sign=sign)
    assert not table.isna().any().any()
    for col in ("relevant_fraction", "relevance_mass", "rank_accuracy", "area_fraction"):
        assert ((table[col] >= -1e-12) & (table[col] <= 1 + 1e-12)).all(), col
    assert table.area_fraction.sum() == pytest.approx(1.0)
    assert table.pixels.sum() == labels.size
    if table.defined.all():
        assert table.relevance_mass.sum() == pytest.approx(1.0)
        assert table.rank_accuracy.mul(table.pixels).sum() <= labels.size + 1e-9
        assert table.pointing_game.any()
        assert np.allclose(table.relevance_density * table.area_fraction, table.relevance_mass)
    if table.attrs["relevant_pixels_total"]:
        assert table.relevant_fraction.sum() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(relevance=maps, data=st.data())
def test_partial_labels_never_exceed_one(relevance, data):
    labels = data.draw(hnp.arrays(np.int64, relevance.shape, elements=st.integers(0, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuantifyWarning)
        table = quantify(relevance, labels)
    assert 0 not in set(table.label)
    assert table.relevance_mass.sum() <= 1 + 1e-9
    assert table.relevant_fraction.sum() <= 1 + 1e-9
