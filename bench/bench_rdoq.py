"""Encode time and RD change of RDOQ (codec/rdoq.py) against the plain encode of the same package.

    PYTHONPATH=. .venv/bin/python bench/bench_rdoq.py [--codec DIR] [--image PNG] [--passes P] [--repeats R]
    PYTHONPATH=. .venv/bin/python bench/bench_rdoq.py --bd packages/int16 [--images data/testset] [--json]

Speed (default): one image (default data/testset/astronaut.png, 256x256) encoded with `reconstruct=True` by
one package (default packages/int16/q2) on `ort-cpu`, plain and with RDOQ, after one warm-up of each. R rounds
(default 3), each timing one plain and one RDOQ encode in turn, so load changes hit both alike; each figure
is the best round. `ratio` = RDOQ time / plain time, measured in this run. Also the bpp and PSNR of both and
the accepted changes per pass.

BD (`--bd FAMILY`): every rate point FAMILY/q* encoded plain and with RDOQ on every PNG of the test set; the
RD point of each is the mean bpp (whole `.bmc`) and mean PSNR over the images, and the BD-rate of RDOQ against
plain is codec.metrics.bd_summary (PCHIP headline, Akima second; negative = fewer bits). Per rate point also
the mean change of J = bits + lambda / 3 SSE (the RDOQ's own objective, on the decoder's reconstruction).

Measured 2026-12-01 (x86_64, 2 shared cores, ort-cpu, 3 passes):

- speed: int16/q2 on astronaut 256x256, plain 9.6 ms, RDOQ 20.3 s (ratio 2104); bpp -4.82 %, PSNR +0.548 dB;
  changes per pass 1137, 381, 200.
- BD (packages/int16 on the 12 images of data/testset): BD-rate -22.01 % (PCHIP), -21.97 % (Akima),
  BD-PSNR +0.651 dB; bjontegaard warns that the curves overlap by 64 % (under its 75 %), since RDOQ moves
  every point to a lower rate. Per rate point q1..q4: bpp -11.9 / -9.4 / -7.0 / -4.7 %, PSNR +0.27 / +0.38 /
  +0.49 / +0.56 dB, J -8.1 / -8.2 / -8.6 / -9.0 %, lower J on every image; 25 to 34 s per image (load
  average about 5). With `--passes 1`: BD-rate -18.29 % (PCHIP), -18.25 % (Akima), BD-PSNR +0.520 dB,
  J -6.9 to -7.3 %, 3.6 to 7.8 s per image (load average under 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from codec.codec import Codec
from codec.images import load_png
from codec.metrics import bd_summary
from codec.rdoq import RdoqOptions
from codec.results import EncodeResult
from codec.train.evaluate import load_testset

REPO = Path(__file__).resolve().parents[1]


def objective(result: EncodeResult, image: np.ndarray, lmbda: float) -> float:
    """J = bits + lambda / 3 SSE (8-bit levels), the quantity RDOQ lowers."""
    error = result.recon.astype(np.float64) - image
    return 8.0 * len(result.bitstream) + lmbda / 3.0 * float(np.sum(error * error))


def timed(codec: Codec, image: np.ndarray, options: RdoqOptions | None) -> tuple[float, EncodeResult]:
    start = time.perf_counter()
    result = codec.encode(image, reconstruct=True, rdoq=options)
    return (time.perf_counter() - start) * 1e3, result


def speed(codec_dir: Path, image_path: Path, passes: int, repeats: int) -> dict:
    codec = Codec.load(codec_dir)
    image = load_png(image_path)
    options = RdoqOptions(passes=passes)
    timed(codec, image, None)
    timed(codec, image, options)
    plain_ms, rdoq_ms = [], []
    for _ in range(repeats):
        plain_ms.append(timed(codec, image, None)[0])
        elapsed, result = timed(codec, image, options)
        rdoq_ms.append(elapsed)
    plain = codec.encode(image, reconstruct=True)
    return {
        "codec": str(codec_dir),
        "image": str(image_path),
        "passes": passes,
        "plain_ms": min(plain_ms),
        "rdoq_ms": min(rdoq_ms),
        "ratio": min(rdoq_ms) / min(plain_ms),
        "plain": {"bpp": plain.bpp, "psnr": plain.psnr},
        "rdoq": {"bpp": result.bpp, "psnr": result.psnr, "changes": result.rdoq.changes},
        "bpp_change_pct": 100.0 * (result.bpp / plain.bpp - 1.0),
        "psnr_change_db": result.psnr - plain.psnr,
    }


def rate_point(package: Path, images: list[tuple[str, np.ndarray]], passes: int) -> dict:
    codec = Codec.load(package)
    lmbda = float(codec.package.manifest["lambda"])
    rows = {"plain": [], "rdoq": []}
    for _, image in images:
        for name, options in (("plain", None), ("rdoq", RdoqOptions(passes=passes))):
            elapsed, result = timed(codec, image, options)
            rows[name].append((result.bpp, result.psnr, objective(result, image, lmbda), elapsed))
    point = {"package": str(package), "lambda": lmbda}
    for name, values in rows.items():
        bpp, psnr, cost, ms = (float(np.mean(column)) for column in zip(*values, strict=True))
        point[name] = {"bpp": bpp, "psnr": psnr, "objective": cost, "ms": ms}
    point["objective_change_pct"] = 100.0 * (point["rdoq"]["objective"] / point["plain"]["objective"] - 1.0)
    point["worst_objective_change"] = max(
        r[2] - p[2] for p, r in zip(rows["plain"], rows["rdoq"], strict=True)
    )
    print(json.dumps(point), file=sys.stderr, flush=True)
    return point


def bd(family: Path, images_dir: Path, passes: int) -> dict:
    images = load_testset(images_dir)
    points = [
        rate_point(package.parent, images, passes) for package in sorted(family.glob("q*/manifest.json"))
    ]
    anchor = [(p["plain"]["bpp"], p["plain"]["psnr"]) for p in points]
    test = [(p["rdoq"]["bpp"], p["rdoq"]["psnr"]) for p in points]
    return {
        "family": str(family),
        "images": len(images),
        "passes": passes,
        "points": points,
        **bd_summary(anchor, test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codec", type=Path, default=REPO / "packages/int16/q2")
    parser.add_argument("--image", type=Path, default=REPO / "data/testset/astronaut.png")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bd", type=Path, default=None, help="a family directory FAMILY/q*/")
    parser.add_argument("--images", type=Path, default=REPO / "data/testset")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.bd is not None:
        report = bd(args.bd, args.images, args.passes)
        text = (
            f"{args.bd}: BD-rate of RDOQ against plain {report['bd_rate_pct']:+.2f} % (PCHIP), "
            f"{report['bd_rate_pct_akima']:+.2f} % (Akima), BD-PSNR {report['bd_psnr_db']:+.3f} dB"
        )
    else:
        report = speed(args.codec, args.image, args.passes, args.repeats)
        text = (
            f"{args.codec} {args.image.name}: plain {report['plain_ms']:.0f} ms, "
            f"RDOQ {report['rdoq_ms']:.0f} ms "
            f"(ratio {report['ratio']:.0f}); bpp {report['bpp_change_pct']:+.2f} %, "
            f"PSNR {report['psnr_change_db']:+.3f} dB; changes per pass {report['rdoq']['changes']}"
        )
    print(json.dumps(report, indent=1) if args.json else text)


if __name__ == "__main__":
    main()
