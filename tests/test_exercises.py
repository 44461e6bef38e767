"""The exercise checkers at the end of the chapters accept the right answer and refuse a wrong one; each right answer
here is an independent closed form, never a value pasted from a run."""
import contextlib, io
import numpy as np


def _quiet(f, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()): return f(*args, **kwargs)


def test_check_belief_variance_against_closed_form():
    "One measured spot, exponential kernel k(d) = exp(-d/l), no noise: the variance at d is 1 - k(d)^2 (1 - e^-2 at d = l)."
    from stlearn_nb.where_what import check_belief_variance
    assert _quiet(check_belief_variance, 1 - np.exp(-2)) and not _quiet(check_belief_variance, np.exp(-1))
    assert _quiet(check_belief_variance, 1 - np.exp(-2 * 0.15 / 0.3), distance=0.15)


def test_check_extended_block_pixels_against_closed_form():
    "An interior block of side B with a halo h on every side holds (B + 2h)^2 working pixels."
    from stlearn_nb.hestseg_wsi import check_extended_block_pixels, BLOCK_PX, HALO_PX
    assert _quiet(check_extended_block_pixels, (BLOCK_PX + 2 * HALO_PX) ** 2)
    assert not _quiet(check_extended_block_pixels, BLOCK_PX ** 2) and not _quiet(check_extended_block_pixels, (BLOCK_PX + HALO_PX) ** 2)
    assert _quiet(check_extended_block_pixels, (100 + 2 * 7) ** 2, block_px=100, halo=7)


def test_check_curated_labels_last_decision_wins():
    "c1: accept (0) then reject (the last class, 2); c2: relabel to 1. The last line of a cell wins."
    from stlearn_nb.ppi_curation import check_curated_labels
    assert _quiet(check_curated_labels, [2, 1])
    assert not _quiet(check_curated_labels, [0, 1]) and not _quiet(check_curated_labels, [2, 1, 0])


def test_check_offset_pixels_is_offset_over_pixel_size():
    "An offset of d um at WORKING_MPP um/px is d / WORKING_MPP pixels (rounded per axis, so within 0.75 px)."
    from stlearn_nb.hestseg_real import check_offset_pixels, WORKING_MPP
    assert _quiet(check_offset_pixels, 2.0 / WORKING_MPP) and _quiet(check_offset_pixels, 4.0 / WORKING_MPP, offset_um=4.0)
    assert not _quiet(check_offset_pixels, 2.0) and not _quiet(check_offset_pixels, 2.0 / WORKING_MPP * 2)
