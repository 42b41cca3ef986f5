"""The cell page's histogram of margins against drift (matplotlib, PNG): how many elements sat how many
float32 steps from flipping, next to how far the decoder's device moved the elements that moved."""

import io

import numpy as np

FIGURE_INCHES, DPI = (6.8, 3.2), 100


def margin_histogram_png(margins_ulp: np.ndarray, drift_ulp: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI)
    axes = figure.add_subplot()
    largest = max(int(margins_ulp.max(initial=1)), int(drift_ulp.max(initial=1)), 2)
    bins = np.unique(np.logspace(0, np.log10(largest) + 0.05, 60).astype(np.int64))
    axes.hist(
        margins_ulp.clip(1), bins=bins, histtype="stepfilled", alpha=0.45, label="margin of each element"
    )
    if drift_ulp.size:
        axes.hist(drift_ulp, bins=bins, histtype="step", linewidth=1.8, label="drift of each moved element")
        axes.axvline(
            int(drift_ulp.max()), color="#cf222e", linewidth=1, linestyle="--", label="largest drift"
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("float32 steps (ULP)")
    axes.set_ylabel("elements")
    axes.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
