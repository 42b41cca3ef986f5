"""Quality and rate metrics: PSNR (RGB and BT.601 luma), MS-SSIM, bits per pixel, BD-rate and BD-PSNR.

MS-SSIM follows Wang, Simoncelli and Bovik (2003): an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, dynamic range 255, five scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average
pooling between scales, contrast-structure terms at the first four scales and the full SSIM at the last;
negative terms are clamped to zero, and the RGB figure is the mean of the per-channel figures. The window is
applied over its valid region only. Images too small for five scales use as many scales as fit (the window
shrinks to the image for an image under 11 pixels) with the weights renormalised, so every size gets a value.

BD figures come from the `bjontegaard` package: PCHIP by default, Akima as the second figure.
"""

import math

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11
_SIGMA = 1.5
_K1, _K2, _RANGE = 0.01, 0.03, 255.0
_BT601 = np.array([65.481, 128.553, 24.966]) / 255.0


def _as_float(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def _psnr_from_mse(mse: float, peak: float = 255.0) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB over all RGB samples (peak 255); inf for identical images."""
    _check_pair(reference, test)
    return _psnr_from_mse(float(np.mean((_as_float(reference) - _as_float(test)) ** 2)))


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, unrounded."""
    return 16.0 + _as_float(image) @ _BT601


def psnr_y(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of BT.601 luma (peak 255)."""
    _check_pair(reference, test)
    return _psnr_from_mse(float(np.mean((luma(reference) - luma(test)) ** 2)))


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a coded image."""
    return 8.0 * num_bytes / (height * width)


def _check_pair(reference: np.ndarray, test: np.ndarray) -> None:
    if reference.shape != test.shape:
        raise ValueError(f"images differ in shape: {reference.shape} vs {test.shape}")


def _gaussian_window(size: int) -> np.ndarray:
    taps = np.arange(size) - (size - 1) / 2.0
    window = np.exp(-(taps**2) / (2 * _SIGMA**2))
    return window / window.sum()


def _filter_valid(plane: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable correlation keeping only the positions where the window lies inside the plane."""
    from scipy.ndimage import correlate1d  # lazy: the emulated compute process has no use for scipy

    half = len(window) // 2
    tail = len(window) - 1 - half
    start, stop_r, stop_c = half, plane.shape[0] - tail, plane.shape[1] - tail
    out = correlate1d(plane, window, axis=0, mode="constant")
    out = correlate1d(out, window, axis=1, mode="constant")
    return out[start:stop_r, start:stop_c]


def _ssim_terms(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(SSIM, contrast-structure) of two single-channel float planes."""
    window = _gaussian_window(min(_WINDOW, *a.shape))
    c1, c2 = (_K1 * _RANGE) ** 2, (_K2 * _RANGE) ** 2
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    cs_map = (2 * cov + c2) / (var_a + var_b + c2)
    ssim_map = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs_map
    return float(ssim_map.mean()), float(cs_map.mean())


def _pool(plane: np.ndarray) -> np.ndarray:
    rows, cols = plane.shape[0] // 2 * 2, plane.shape[1] // 2 * 2
    trimmed = plane[:rows, :cols]
    return 0.25 * (trimmed[0::2, 0::2] + trimmed[1::2, 0::2] + trimmed[0::2, 1::2] + trimmed[1::2, 1::2])


def _scales_that_fit(height: int, width: int) -> int:
    scales, side = 1, min(height, width)
    while scales < len(MS_SSIM_WEIGHTS) and side // 2 >= _WINDOW:
        side //= 2
        scales += 1
    return scales


def _ms_ssim_plane(a: np.ndarray, b: np.ndarray, scales: int) -> float:
    weights = np.array(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    terms = []
    for scale in range(scales):
        ssim, cs = _ssim_terms(a, b)
        terms.append(max(ssim if scale == scales - 1 else cs, 0.0))
        a, b = _pool(a), _pool(b)
    return float(np.prod(np.power(terms, weights)))


def ms_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    """MS-SSIM of two uint8 HxWx3 (or HxW) images, in [0, 1] (see the module docstring for small images)."""
    _check_pair(reference, test)
    ref, tst = _as_float(reference), _as_float(test)
    if ref.ndim == 2:
        ref, tst = ref[..., None], tst[..., None]
    scales = _scales_that_fit(ref.shape[0], ref.shape[1])
    return float(np.mean([_ms_ssim_plane(ref[..., c], tst[..., c], scales) for c in range(ref.shape[2])]))


def bd_rate(
    anchor: list[tuple[float, float]], test: list[tuple[float, float]], method: str = "pchip"
) -> float:
    """Bjontegaard-delta rate in percent of `test` against `anchor`, each a list of (bpp, quality) points."""
    return _bd("bd_rate", anchor, test, method)


def bd_psnr(
    anchor: list[tuple[float, float]], test: list[tuple[float, float]], method: str = "pchip"
) -> float:
    """Bjontegaard-delta quality (dB for PSNR) of `test` against `anchor`."""
    return _bd("bd_psnr", anchor, test, method)


def bd_summary(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> dict[str, float]:
    """BD-rate and BD-PSNR with PCHIP (the headline figures) and Akima (the second figure)."""
    return {
        "bd_rate_pct": bd_rate(anchor, test, "pchip"),
        "bd_psnr_db": bd_psnr(anchor, test, "pchip"),
        "bd_rate_pct_akima": bd_rate(anchor, test, "akima"),
        "bd_psnr_db_akima": bd_psnr(anchor, test, "akima"),
    }


def _bd(function_name: str, anchor, test, method: str) -> float:
    import bjontegaard  # lazy: it pulls in matplotlib, which emulated targets do not install

    function = getattr(bjontegaard, function_name)
    anchor_sorted, test_sorted = sorted(anchor), sorted(test)
    rate_a, dist_a = (np.array(values, dtype=np.float64) for values in zip(*anchor_sorted, strict=True))
    rate_t, dist_t = (np.array(values, dtype=np.float64) for values in zip(*test_sorted, strict=True))
    return float(function(rate_a, dist_a, rate_t, dist_t, method=method, require_matching_points=False))
