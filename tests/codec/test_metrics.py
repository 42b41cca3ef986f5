"""PSNR, MS-SSIM, bpp and the BD figures."""

import math

import numpy as np
import pytest

from codec import metrics


def _pair(shape=(96, 80, 3), noise=8.0, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 128 + 60 * np.sin(rows / 7.0)[..., None] * np.cos(cols / 5.0)[..., None] * np.ones(shape[2])
    reference = np.clip(base, 0, 255).astype(np.uint8)
    test = np.clip(base + rng.normal(0, noise, shape), 0, 255).astype(np.uint8)
    return reference, test


def test_psnr_matches_the_definition():
    reference = np.zeros((4, 4, 3), np.uint8)
    test = reference.copy()
    test[0, 0, 0] = 10
    expected = 10 * math.log10(255**2 / (100 / 48))
    assert metrics.psnr(reference, test) == pytest.approx(expected)
    assert metrics.psnr(reference, reference) == math.inf


def test_psnr_y_uses_bt601_luma():
    reference = np.zeros((2, 2, 3), np.uint8)
    test = np.zeros((2, 2, 3), np.uint8)
    test[..., 1] = 255  # pure green: luma rises by 128.553
    assert metrics.luma(reference)[0, 0] == pytest.approx(16.0)
    assert metrics.psnr_y(reference, test) == pytest.approx(10 * math.log10(255**2 / 128.553**2))


def test_bpp():
    assert metrics.bpp(96, 16, 12) == pytest.approx(4.0)


def test_ms_ssim_is_one_for_identical_images_and_falls_with_noise():
    reference, mild = _pair(noise=4.0)
    _, strong = _pair(noise=30.0)
    assert metrics.ms_ssim(reference, reference) == pytest.approx(1.0)
    assert 1.0 > metrics.ms_ssim(reference, mild) > metrics.ms_ssim(reference, strong) > 0.0
    assert metrics.ms_ssim(reference, mild) == pytest.approx(metrics.ms_ssim(mild, reference))


def test_ms_ssim_uses_five_scales_on_large_images_and_fewer_on_small_ones():
    assert metrics._scales_that_fit(176, 200) == 5
    assert metrics._scales_that_fit(64, 64) == 3
    assert metrics._scales_that_fit(1, 1) == 1


@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 9, 3), (17, 31, 3), (33, 200, 3)])
def test_ms_ssim_is_defined_for_every_size(shape):
    reference, test = _pair(shape=shape, noise=10.0)
    value = metrics.ms_ssim(reference, test)
    assert 0.0 <= value <= 1.0 and math.isfinite(value)


def test_ms_ssim_single_scale_matches_a_direct_ssim_computation():
    # At one scale MS-SSIM is the mean SSIM over the valid 11x11 Gaussian windows; recompute a few by hand.
    reference, test = _pair(shape=(11, 11, 1), noise=12.0)
    a, b = reference[..., 0].astype(float), test[..., 0].astype(float)
    taps = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2
    mu_a, mu_b = (window * a).sum(), (window * b).sum()
    var_a = (window * a * a).sum() - mu_a**2
    var_b = (window * b * b).sum() - mu_b**2
    cov = (window * a * b).sum() - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    assert metrics.ms_ssim(reference[..., 0], test[..., 0]) == pytest.approx(ssim, rel=1e-9)


def test_bd_rate_of_a_uniformly_cheaper_curve():
    anchor = [(0.25, 30.0), (0.5, 33.0), (1.0, 36.0), (2.0, 39.0)]
    cheaper = [(rate * 0.9, psnr) for rate, psnr in anchor]
    summary = metrics.bd_summary(anchor, cheaper)
    assert summary["bd_rate_pct"] == pytest.approx(-10.0, abs=1e-6)
    assert summary["bd_rate_pct_akima"] == pytest.approx(-10.0, abs=1e-6)
    assert summary["bd_psnr_db"] > 0
    better = [(rate, psnr + 0.5) for rate, psnr in anchor]
    assert metrics.bd_psnr(anchor, better) == pytest.approx(0.5, abs=1e-6)


def test_ms_ssim_agrees_with_pytorch_msssim():
    # Reference value computed once with pytorch_msssim 1.0 (ms_ssim, data_range=255) on these two images.
    rng = np.random.default_rng(0)
    rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:256, 0:320]
    wave = 128 + 60 * np.sin(rows / 9)[..., None] * np.cos(cols / 13)[..., None]
    a = np.clip(wave + rng.normal(0, 5, (256, 320, 3)), 0, 255).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(a, b) == pytest.approx(0.9394665, abs=2e-5)
