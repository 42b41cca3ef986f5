"""Training of the lowcomplexity family (codec/lowcx.py): a base model, then one fine-tune per rate point.

The same loop and schedule shape as codec/train/train.py, shorter (the family trains here on a shared CPU);
checkpoints and weights are named `lowcx-*` in the work directory so they never meet the hyperprior's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from codec import networks
from codec.progress import SILENT, Progress
from codec.resources import image_set
from codec.train import train as loop
from codec.train.factorized import FactorizedCodec
from codec.vocabulary import Lowering, Precision

ARCH = networks.Architecture(n=32, m=48, family=networks.LOWCOMPLEXITY)  # ReLU / ReLU (paper's "Base")
LAMBDAS = loop.LAMBDAS
BASE_LAMBDA = loop.BASE_LAMBDA
BASE = loop.Schedule(steps=7000, lr=1e-3, decay_from=0.85)
FINETUNE = loop.Schedule(steps=2500, lr=3e-4, decay_from=0.7)
PREFIX = "lowcx"


def base_path(work_dir: Path) -> Path:
    return work_dir / f"{PREFIX}-base.pt"


def rate_path(work_dir: Path, rate: int) -> Path:
    return work_dir / f"{PREFIX}-q{rate}.pt"


def train_base(
    crops: tuple[np.ndarray, np.ndarray],
    seed: int,
    work_dir: Path,
    schedule: loop.Schedule = BASE,
    progress: Progress = SILENT,
) -> Path:
    torch.manual_seed(seed)
    model = FactorizedCodec(ARCH)
    log = work_dir / f"{PREFIX}-base.log.jsonl"
    loop.train(model, crops[0], BASE_LAMBDA, schedule, seed, log, weights=crops[1], progress=progress)
    path = base_path(work_dir)
    loop.save_checkpoint(model, path, {"lambda": BASE_LAMBDA, "seed": seed, "schedule": asdict(schedule)})
    return path


def finetune(
    crops: tuple[np.ndarray, np.ndarray],
    seed: int,
    work_dir: Path,
    rate: int,
    schedule: loop.Schedule = FINETUNE,
    progress: Progress = SILENT,
) -> Path:
    model, meta = loop.load_checkpoint(base_path(work_dir))
    lmbda = LAMBDAS[rate - 1]
    log = work_dir / f"{PREFIX}-q{rate}.log.jsonl"
    loop.train(model, crops[0], lmbda, schedule, seed + rate, log, weights=crops[1], progress=progress)
    path = rate_path(work_dir, rate)
    meta = {"lambda": lmbda, "seed": seed, "rate_point": rate, "base": meta, "schedule": asdict(schedule)}
    loop.save_checkpoint(model, path, meta)
    return path


# --- packages and their RD report --------------------------------------------------------------------

# name -> (contexts, activation bits): the family, and the same model without contexts (paper 001's "Base")
VARIANTS = {"lowcomplexity": (4, True), "lowcomplexity-nocontext": (1, False)}
WEIGHTS_VARIANT = "lowcomplexity"  # the one package per rate point that keeps a copy of the float weights
GS_LOWERING = Lowering.INT8_DIGITS  # a quarter of the float64 lowering's size, the same integers


def training_latents(model: FactorizedCodec, crops: np.ndarray) -> np.ndarray:
    """round(g_a(x)) [K, M, h, w] of every training crop, through the package's analysis graph."""
    from codec.lowcx_build import integer_latents

    return integer_latents(model.arch, model.float_weights(), list(crops))


def calibration_latents(model: FactorizedCodec) -> np.ndarray:
    """Integer latents of data/calibration (training photographs of one size), the integer g_s's
    calibration set."""
    from codec.images import load_png
    from codec.lowcx_build import integer_latents

    images = [load_png(path) for path in sorted(image_set("calibration").glob("*.png"))]
    return integer_latents(model.arch, model.float_weights(), images)


def export_rate_point(
    crops: np.ndarray,
    work_dir: Path,
    out_dir: Path,
    rate: int,
    precision: str = Precision.INT16_FULL,
    variants: dict = VARIANTS,
    lowering: str = GS_LOWERING,
) -> list[dict]:
    """The packages OUT/VARIANT/qI of one trained rate point: their context models fitted on the training
    crops' latents, one g_s (integer for int16-full, calibrated on data/calibration) shared by all."""
    from codec import contexts_fit
    from codec.lowcx_build import build_package, synthesis_graph

    model, meta = loop.load_checkpoint(rate_path(work_dir, rate))
    weights = model.float_weights()
    latents = training_latents(model, crops)
    synthesis = synthesis_graph(precision, model.arch, weights, calibration_latents(model), lowering)
    rows = []
    for name, (count, activation) in variants.items():
        fitted = contexts_fit.fit(latents, count, activation)
        metadata = {"weights": "trained", "training": meta, "context_fit": f"{len(crops)} training crops"}
        if synthesis[1] is not None:
            metadata.update(calibration="data/calibration", gs_lowering=str(lowering))
        out = out_dir / name / f"q{rate}"
        digest = build_package(out, model.arch, weights, fitted, synthesis, metadata, name == WEIGHTS_VARIANT)
        rows.append({"name": f"{name}/q{rate}", "digest": digest})
    return rows


def report(
    out_dir: Path,
    variants: dict = VARIANTS,
    progress: Progress = SILENT,
    roots: dict[str, Path] | None = None,
) -> dict:
    """RD points of every variant on data/testset (OUT/VARIANT/qI, or ROOTS[VARIANT]/VARIANT/qI), and the
    BD-rate of each against the no-context one."""
    from codec.train import evaluate

    images = evaluate.load_testset()
    curves = {}
    families = {
        name: sorted(
            path.parent for path in ((roots or {}).get(name, out_dir) / name).glob("q*/manifest.json")
        )
        for name in variants
    }
    progress.add_total(len(images) * sum(len(dirs) for dirs in families.values()))
    for name, dirs in families.items():
        curves[name] = [evaluate.codec_point(path, images, progress=progress) for path in dirs]
    anchor = "lowcomplexity-nocontext"
    bd = {
        f"{name}_vs_{anchor}": evaluate._bd(curves[anchor], curves[name]) for name in curves if name != anchor
    }
    return {"packages": {name: {"rd_points": points} for name, points in curves.items()}, "bd_rate": bd}


# contexts without activation bits, activation bits without contexts: what each part of section 3.1 gives
ABLATION = {"lowcomplexity-ctx-noact": (4, False), "lowcomplexity-noctx-act": (1, True)}


def ablation(
    crops: np.ndarray, work_dir: Path, out_dir: Path, scratch: Path, progress: Progress = SILENT
) -> dict:
    """BD-rates against the no-context packages in OUT of the shipped family and of the ABLATION variants,
    built in `scratch` from the same checkpoints with the shipped g_s (so only the rate differs)."""
    for rate in range(1, len(LAMBDAS) + 1):
        _build_ablation(crops, work_dir, out_dir, scratch, rate)
    roots = {**{name: out_dir for name in VARIANTS}, **{name: scratch for name in ABLATION}}
    return report(out_dir, {**VARIANTS, **ABLATION}, progress, roots)["bd_rate"]


def _build_ablation(crops: np.ndarray, work_dir: Path, out_dir: Path, scratch: Path, rate: int) -> None:
    import json

    from codec import contexts_fit
    from codec.lowcx_build import build_package
    from codec.package import CERTIFICATE, SYNTHESIS, CodecPackage

    model, _ = loop.load_checkpoint(rate_path(work_dir, rate))
    shipped = CodecPackage.load(out_dir / WEIGHTS_VARIANT / f"q{rate}")
    synthesis = (shipped.read(SYNTHESIS), json.loads(shipped.read(CERTIFICATE)))
    latents = training_latents(model, crops)
    for name, (count, activation) in ABLATION.items():
        fitted = contexts_fit.fit(latents, count, activation)
        out = scratch / name / f"q{rate}"
        build_package(out, model.arch, model.float_weights(), fitted, synthesis, None, False)
