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
from codec.train import train as loop
from codec.train.factorized import FactorizedCodec

ARCH = networks.Architecture(n=32, m=48, family=networks.LOWCOMPLEXITY)  # ReLU / ReLU (paper's "Base")
LAMBDAS = loop.LAMBDAS
BASE_LAMBDA = loop.BASE_LAMBDA
BASE = loop.Schedule(steps=7000, lr=1e-3, decay_from=0.85)
FINETUNE = loop.Schedule(steps=3000, lr=3e-4, decay_from=0.7)
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
