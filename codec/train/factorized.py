"""The factorized-prior autoencoder of the lowcomplexity family (codec/lowcx.py) in torch, for training.

g_a and g_s are those of `networks.network_layers` for a `lowcomplexity` architecture (ReLU between the
layers, the "Base" model of Galpin et al., "Entropy coding improvement for low-complexity compressive
auto-encoders"), so `float_weights()` is the flat weight dict the package builder takes. The training-time
rate model of y is a per-channel mixture of logistics; it only shapes the latents: the package codes y with
histogram CDFs measured on the training latents after training (codec/lowcx.py), as the paper does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec import networks
from codec.train.model import LIKELIHOOD_FLOOR, _conv, _run, round_ste

MIXTURE = 3


class LogisticMixturePrior(nn.Module):
    """Per-channel mixture of MIXTURE logistics over y (discretised to the integers by the rate)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        spread = torch.linspace(-2.0, 2.0, MIXTURE).repeat(channels, 1)
        self.loc = nn.Parameter(spread.clone())
        self.log_scale = nn.Parameter(torch.zeros(channels, MIXTURE))
        self.logit = nn.Parameter(torch.zeros(channels, MIXTURE))

    def _cdf(self, x: torch.Tensor) -> torch.Tensor:
        loc = self.loc.view(1, -1, 1, 1, MIXTURE)
        scale = self.log_scale.exp().clamp_min(0.05).view(1, -1, 1, 1, MIXTURE)
        weight = torch.softmax(self.logit, dim=1).view(1, -1, 1, 1, MIXTURE)
        return (weight * torch.sigmoid((x.unsqueeze(-1) - loc) / scale)).sum(-1)

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        return (self._cdf(y + 0.5) - self._cdf(y - 0.5)).clamp_min(LIKELIHOOD_FLOOR)


class FactorizedCodec(nn.Module):
    """g_a -> round -> g_s, with the factorized rate of y (additive uniform noise at training time)."""

    def __init__(self, arch: networks.Architecture) -> None:
        super().__init__()
        if not arch.factorized:
            raise ValueError(f"FactorizedCodec needs a factorized family, got {arch.family!r}")
        self.arch = arch
        self.specs = networks.network_layers(arch)
        for net, specs in self.specs.items():
            setattr(self, net, nn.ModuleList(_conv(spec) for spec in specs))
        self.gdn = nn.ModuleDict()
        self.y_prior = LogisticMixturePrior(arch.m)

    def forward(self, x: torch.Tensor, noise: bool = True) -> dict[str, torch.Tensor]:
        y = _run(self.g_a, self.specs["g_a"], x, "g_a", self.gdn)
        y_rate = y + torch.empty_like(y).uniform_(-0.5, 0.5) if noise else torch.round(y)
        x_hat = _run(self.g_s, self.specs["g_s"], round_ste(y), "g_s", self.gdn)
        return {"x_hat": x_hat, "y_likelihood": self.y_prior.likelihood(y_rate)}

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """round(g_a(x)): the integers the codec codes."""
        return torch.round(_run(self.g_a, self.specs["g_a"], x, "g_a", self.gdn))

    def float_weights(self) -> dict[str, np.ndarray]:
        return {
            name: tensor.detach().cpu().numpy().astype(np.float32)
            for name, tensor in self.state_dict().items()
            if name.split(".")[0] in self.specs
        }


def factorized_loss(out: dict[str, torch.Tensor], x: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """lambda 255^2 MSE + bpp, as `model.rd_loss` without a z term."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = -torch.log2(out["y_likelihood"]).sum() / pixels
    mse = F.mse_loss(out["x_hat"], x)
    return {"loss": lmbda * 255.0**2 * mse + bpp, "bpp": bpp, "mse": mse}
