"""Train the small CompressAI checkpoints the importer tests use, and save them the way CompressAI users do.

    .venv/bin/python tests/data/compressai/make_checkpoints.py [--threads 1] [--out tests/data/compressai]

The zoo's weights cannot be downloaded here, so these are real CompressAI models (`compressai==1.2.8`, its own
model code, loaded by tests/compressai_loader.py) trained briefly on bitmatch's training crops
(`python -m codec.train data` makes them; the held-out test set is never used). For each architecture a base
model is trained at the middle lambda, then fine-tuned once per rate point, with CompressAI's usual recipe:
loss = lambda 255^2 MSE + bpp, Adam on the network, a second Adam on the entropy bottleneck's quantiles
(`aux_loss`), and `update(force=True)` before saving, so the checkpoint carries its quantized CDFs.

Each rate point is written as `ARCH-qI.pth`, a plain `torch.save(model.state_dict())`. N=32, M=48 keeps each
file near 1.5 MB. Deterministic for a seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from codec.train import data  # noqa: E402
from tests.compressai_loader import ARCHITECTURES, model_class  # noqa: E402

N, M = 32, 48
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.013)
BASE_LAMBDA = 0.0067
BASE_STEPS, FINETUNE_STEPS, BATCH = 8000, 2000, 8
BASE_LR, FINETUNE_LR, AUX_LR = 1e-3, 2e-4, 1e-3


def batches(crops: np.ndarray, weights: np.ndarray, seed: int):
    rng = np.random.Generator(np.random.PCG64(seed))
    while True:
        picks = crops[rng.choice(len(crops), BATCH, p=weights)]
        if rng.random() < 0.5:
            picks = picks[:, :, ::-1]
        yield torch.from_numpy(np.ascontiguousarray(picks.transpose(0, 3, 1, 2))).float().div_(255.0)


def rd_loss(out: dict, x: torch.Tensor, lmbda: float) -> tuple[torch.Tensor, float, float]:
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * pixels)
    mse = torch.mean((out["x_hat"] - x) ** 2)
    return lmbda * 255**2 * mse + bpp, bpp.item(), mse.item()


def train(
    net: torch.nn.Module,
    crops: tuple[np.ndarray, np.ndarray],
    lmbda: float,
    steps: int,
    lr: float,
    seed: int,
    log: Path,
) -> None:
    torch.manual_seed(seed)
    main_params = [p for name, p in net.named_parameters() if not name.endswith("quantiles")]
    aux_params = [p for name, p in net.named_parameters() if name.endswith("quantiles")]
    optimizer, aux_optimizer = torch.optim.Adam(main_params, lr=lr), torch.optim.Adam(aux_params, lr=AUX_LR)
    net.train()
    start, window = time.perf_counter(), []
    for step, x in zip(range(steps), batches(*crops, seed), strict=False):
        if step == int(steps * 0.85):
            for group in optimizer.param_groups:
                group["lr"] = lr / 10
        loss, bpp, mse = rd_loss(net(x), x, lmbda)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        optimizer.step()
        aux_optimizer.zero_grad(set_to_none=True)
        net.aux_loss().backward()
        aux_optimizer.step()
        window.append((loss.item(), bpp, mse))
        if (step + 1) % 200 == 0:
            loss_m, bpp_m, mse_m = np.mean(window, axis=0)
            window.clear()
            row = {
                "step": step + 1,
                "lambda": lmbda,
                "loss": loss_m,
                "bpp": bpp_m,
                "psnr": 10 * math.log10(1 / mse_m),
                "seconds": round(time.perf_counter() - start, 1),
            }
            with log.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
    net.eval()


def make(arch: str, crops: tuple[np.ndarray, np.ndarray], seed: int, out: Path, work: Path) -> None:
    torch.manual_seed(seed)
    net = model_class(arch)(N, M)
    train(net, crops, BASE_LAMBDA, BASE_STEPS, BASE_LR, seed, work / f"{arch}-base.log.jsonl")
    base = {name: value.clone() for name, value in net.state_dict().items()}
    for rate, lmbda in enumerate(LAMBDAS, start=1):
        net = model_class(arch)(N, M)
        net.load_state_dict(base)
        train(net, crops, lmbda, FINETUNE_STEPS, FINETUNE_LR, seed + rate, work / f"{arch}-q{rate}.log.jsonl")
        net.update(force=True)
        torch.save(net.state_dict(), out / f"{arch}-q{rate}.pth")
        print(f"{arch}-q{rate}.pth", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "bitmatch" / "train")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), action="append")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops = data.load_crops(args.work)
    for arch in args.arch or sorted(ARCHITECTURES):
        make(arch, crops, args.seed, args.out, args.work)


if __name__ == "__main__":
    main()
