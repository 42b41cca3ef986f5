"""The training loop: a base model at a middle lambda, then one fine-tune per rate point.

Deterministic from a seed for a fixed thread count (torch's CPU kernels are deterministic; the crop order
and the quantisation noise come from seeded generators). Checkpoints are plain torch state dicts.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from codec import networks
from codec.progress import SILENT, Progress
from codec.train import export
from codec.train.factorized import FactorizedCodec, factorized_loss
from codec.train.model import HyperpriorCodec, rd_loss

# N=32, M=48 keeps the twelve packages (4 rate points x 3 precisions) under 30 MB; simplified GDN in g_a / g_s
# trained far faster than ReLU at this size (same steps: loss 5.1 vs 7.2 at lambda 0.013 after 1000 steps).
ARCH = networks.Architecture(n=32, m=48, transform="gdn")
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013)  # lambda 255^2 MSE + bpp; one package per value
BASE_LAMBDA = 0.0067


@dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    batch: int = 8
    decay_from: float = 0.8  # fraction of the steps after which the learning rate falls 10x
    clip: float = 1.0


BASE = Schedule(steps=24000, lr=1e-3, decay_from=0.85)
FINETUNE = Schedule(steps=6000, lr=3e-4, decay_from=0.7)


def new_model(seed: int, arch: networks.Architecture = ARCH) -> HyperpriorCodec:
    torch.manual_seed(seed)
    return HyperpriorCodec(arch)


def batches(crops: np.ndarray, batch: int, seed: int, weights: np.ndarray | None = None):
    """Endless random batches of crops (drawn with probabilities `weights`, random flips), float32 NCHW."""
    rng = np.random.Generator(np.random.PCG64(seed))
    while True:
        picks = crops[rng.choice(len(crops), batch, p=weights)]
        if rng.random() < 0.5:
            picks = picks[:, :, ::-1]
        if rng.random() < 0.5:
            picks = picks[:, ::-1]
        yield torch.from_numpy(np.ascontiguousarray(picks.transpose(0, 3, 1, 2))).float().div_(255.0)


def train(
    model: HyperpriorCodec | FactorizedCodec,
    crops: np.ndarray,
    lmbda: float,
    schedule: Schedule,
    seed: int,
    log_path: Path | None = None,
    log_every: int = 100,
    weights: np.ndarray | None = None,
    progress: Progress = SILENT,
) -> list[dict]:
    """Run `schedule.steps` Adam steps on the rate-distortion loss (one progress step each); returns the
    logged rows."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=schedule.lr)
    decay_at = math.floor(schedule.steps * schedule.decay_from)
    rows: list[dict] = []
    window: list[tuple[float, float, float]] = []
    start = time.perf_counter()
    model.train()
    for step, x in zip(range(schedule.steps), batches(crops, schedule.batch, seed, weights), strict=False):
        if step == decay_at:
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr / 10
        terms = loss_of(model)(model(x), x, lmbda)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.clip)
        optimizer.step()
        window.append((terms["loss"].item(), terms["bpp"].item(), terms["mse"].item()))
        progress.advance()
        if (step + 1) % log_every == 0 or step + 1 == schedule.steps:
            loss, bpp, mse = np.mean(window, axis=0)
            row = {
                "step": step + 1,
                "lambda": lmbda,
                "loss": float(loss),
                "bpp": float(bpp),
                "psnr": float(10 * np.log10(1.0 / mse)),
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            window.clear()
            if log_path is not None:
                with log_path.open("a") as log:
                    log.write(json.dumps(row) + "\n")
    model.eval()
    return rows


def model_of(arch: networks.Architecture) -> HyperpriorCodec | FactorizedCodec:
    """The torch model of an architecture's family."""
    return FactorizedCodec(arch) if arch.factorized else HyperpriorCodec(arch)


def loss_of(model: HyperpriorCodec | FactorizedCodec):  # type: ignore[no-untyped-def]
    """The rate-distortion loss of a model's family."""
    return factorized_loss if isinstance(model, FactorizedCodec) else rd_loss


def save_checkpoint(model: HyperpriorCodec | FactorizedCodec, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "arch": model.arch.to_dict(), "meta": meta}, path)


def load_checkpoint(path: Path) -> tuple[HyperpriorCodec | FactorizedCodec, dict]:
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = model_of(networks.Architecture.from_dict(data["arch"]))
    model.load_state_dict(data["state"])
    model.eval()
    return model, data["meta"]


def train_base(
    crops: tuple[np.ndarray, np.ndarray],
    seed: int,
    work_dir: Path,
    schedule: Schedule = BASE,
    progress: Progress = SILENT,
) -> Path:
    model = new_model(seed)
    log = work_dir / "base.log.jsonl"
    train(model, crops[0], BASE_LAMBDA, schedule, seed, log, weights=crops[1], progress=progress)
    path = work_dir / "base.pt"
    save_checkpoint(model, path, {"lambda": BASE_LAMBDA, "seed": seed, "schedule": asdict(schedule)})
    return path


def finetune(
    crops: tuple[np.ndarray, np.ndarray],
    seed: int,
    work_dir: Path,
    lmbda: float,
    base: Path,
    schedule: Schedule = FINETUNE,
    progress: Progress = SILENT,
) -> Path:
    model, meta = load_checkpoint(base)
    train(
        model,
        crops[0],
        lmbda,
        schedule,
        seed + 1 + LAMBDAS.index(lmbda),
        work_dir / f"q{lmbda}.log.jsonl",
        weights=crops[1],
        progress=progress,
    )
    rate = LAMBDAS.index(lmbda) + 1
    path = work_dir / f"q{rate}.pt"
    meta = {
        "lambda": lmbda,
        "seed": seed,
        "rate_point": rate,
        "base": meta,
        "schedule": asdict(schedule),
        "architecture": model.arch.to_dict(),
    }
    save_checkpoint(model, path, meta)
    export.save_weights(work_dir / f"q{rate}.npz", model.float_weights(), *model.z_prior_params(), meta)
    return path
