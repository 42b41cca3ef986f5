"""The codec networks of codec/networks.py in torch, with the training-time rate model.

Layer names match `networks.network_layers` ("g_a.0.weight", ...), so `float_weights()` is exactly the flat
weight dict the package builder takes. Rate model:

- y: discretised Gaussian with mean mu and sigma = T(u) (paper 000), T the ODE mapping of codec.scale,
  interpolated linearly in log sigma on a fine u grid so it is differentiable; u outside [0, 1] is clamped
  in value but keeps a unit gradient (straight through) within U_MARGIN of the ends, so a unit pushed past
  an end can come back, and none beyond, so u stays in a range the integer h_s represents well;
- z: per-channel factorized discretised Laplace (location, log scale learned); its pmfs become the package's
  z tables at export.

Quantisation: the rate sees additive uniform noise; the synthesis and the hyper-synthesis see rounded values
with a straight-through gradient (the codec codes round(y - mu) and feeds h_s the integer z_hat).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codec import networks, scale

LIKELIHOOD_FLOOR = 1e-9
_U_GRID = 2048
U_MARGIN = 0.5


def _conv(spec: networks.LayerSpec) -> nn.Module:
    if spec.kind == "conv":
        return nn.Conv2d(spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.padding)
    return nn.ConvTranspose2d(
        spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.padding, output_padding=spec.output_padding
    )


class SimplifiedGDN(nn.Module):
    """x / (beta + gamma |x|), or x * (...) inverse; beta and gamma stay non-negative as |raw| (+ floor)."""

    BETA_FLOOR = 1e-4

    def __init__(self, channels: int, inverse: bool) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_raw = nn.Parameter(torch.ones(channels))
        self.gamma_raw = nn.Parameter(0.1 * torch.eye(channels) + 1e-3)  # off-diagonals start non-zero

    def beta(self) -> torch.Tensor:
        return self.beta_raw.abs() + self.BETA_FLOOR

    def gamma(self) -> torch.Tensor:
        return self.gamma_raw.abs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = F.conv2d(x.abs(), self.gamma()[:, :, None, None], self.beta())
        return x * norm if self.inverse else x / norm


def _gdn_key(net: str, index: int) -> str:
    return f"{net}_{index}"


def _run(
    layers: nn.ModuleList, specs: list[networks.LayerSpec], x: torch.Tensor, net: str, gdn: nn.ModuleDict
) -> torch.Tensor:
    for index, (layer, spec) in enumerate(zip(layers, specs, strict=True)):
        x = layer(x)
        if spec.act == "relu":
            x = F.relu(x)
        elif spec.act == "leaky":
            x = F.leaky_relu(x, spec.slope)
        elif spec.act in networks.GDN_ACTS:
            x = gdn[_gdn_key(net, index)](x)
    return x


def round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class SigmaOfU(nn.Module):
    """sigma = T(u) of codec.scale (ODE mapping), piecewise linear in log sigma on a 2048-cell u grid."""

    def __init__(self, sigma_min: float, sigma_max: float) -> None:
        super().__init__()
        mapping = scale.ode_mapping(sigma_min, sigma_max)
        grid = np.log(mapping.sigma(np.linspace(0.0, 1.0, _U_GRID + 1)))
        self.register_buffer("log_sigma", torch.tensor(grid, dtype=torch.float32))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u = u.clamp(-U_MARGIN, 1.0 + U_MARGIN)  # no gradient far outside: u cannot drift away
        u = u.clamp(0.0, 1.0) + (u - u.detach())  # value clamped, gradient straight through near [0, 1]
        position = u * _U_GRID
        index = position.detach().floor().clamp(0, _U_GRID - 1)
        frac = position - index
        low = self.log_sigma[index.long()]
        high = self.log_sigma[index.long() + 1]
        return torch.exp(low + frac * (high - low))


def gaussian_likelihood(residual: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """P(round value) of a discretised zero-mean Gaussian at integer-spaced residuals (upper tail form)."""
    r = residual.abs()
    upper = torch.special.ndtr((0.5 - r) / sigma)
    lower = torch.special.ndtr((-0.5 - r) / sigma)
    return (upper - lower).clamp_min(LIKELIHOOD_FLOOR)


class LaplacePrior(nn.Module):
    """Per-channel discretised Laplace density for z (factorized prior)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))

    def _cdf(self, x: torch.Tensor) -> torch.Tensor:
        loc = self.loc.view(1, -1, 1, 1)
        b = self.log_scale.exp().view(1, -1, 1, 1).clamp_min(0.05)
        t = (x - loc) / b
        return torch.where(t < 0, 0.5 * torch.exp(t.clamp_max(0)), 1 - 0.5 * torch.exp(-t.clamp_min(0)))

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        return (self._cdf(z + 0.5) - self._cdf(z - 0.5)).clamp_min(LIKELIHOOD_FLOOR)


class HyperpriorCodec(nn.Module):
    def __init__(self, arch: networks.Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.specs = networks.network_layers(arch)
        for net, specs in self.specs.items():
            setattr(self, net, nn.ModuleList(_conv(spec) for spec in specs))
        self.gdn = nn.ModuleDict(
            {
                _gdn_key(net, index): SimplifiedGDN(spec.c_out, spec.act == "igdn1")
                for net, specs in self.specs.items()
                for index, spec in enumerate(specs)
                if spec.act in networks.GDN_ACTS
            }
        )
        self.z_prior = LaplacePrior(arch.n)
        self.sigma_of_u = SigmaOfU(arch.sigma_min, arch.sigma_max)
        with torch.no_grad():  # start u in the middle of [0, 1]
            self.h_s[-1].bias[: arch.m].fill_(0.5)

    def forward(self, x: torch.Tensor, noise: bool = True) -> dict[str, torch.Tensor]:
        y = self._net("g_a", x)
        z = self._net("h_a", y)
        z_hat = round_ste(z)
        z_rate = z + torch.empty_like(z).uniform_(-0.5, 0.5) if noise else z_hat
        hs = self._net("h_s", z_hat)
        m = self.arch.m
        u, mean = hs[:, :m], hs[:, m:]
        sigma = self.sigma_of_u(u)
        residual = y - mean
        y_rate = residual + torch.empty_like(y).uniform_(-0.5, 0.5) if noise else torch.round(residual)
        y_hat = round_ste(residual) + mean
        x_hat = self._net("g_s", y_hat)
        return {
            "x_hat": x_hat,
            "y_likelihood": gaussian_likelihood(y_rate, sigma),
            "z_likelihood": self.z_prior.likelihood(z_rate),
            "u": u,
        }

    def _net(self, net: str, x: torch.Tensor) -> torch.Tensor:
        return _run(getattr(self, net), self.specs[net], x, net, self.gdn)

    def z_prior_params(self) -> tuple[np.ndarray, np.ndarray]:
        """(location, log scale) of the factorized z prior, float64."""
        return (self.z_prior.loc.detach().double().numpy(), self.z_prior.log_scale.detach().double().numpy())

    def float_weights(self) -> dict[str, np.ndarray]:
        """The flat weight dict of codec/networks.py (float32, torch layout)."""
        weights = {
            name: tensor.detach().cpu().numpy().astype(np.float32)
            for name, tensor in self.state_dict().items()
            if name.split(".")[0] in self.specs
        }
        for key, gdn in self.gdn.items():
            net, index = key.rsplit("_", 1)
            weights[f"{net}.{index}.gdn_beta"] = gdn.beta().detach().numpy().astype(np.float32)
            weights[f"{net}.{index}.gdn_gamma"] = gdn.gamma().detach().numpy().astype(np.float32)
        return weights


def rd_loss(out: dict[str, torch.Tensor], x: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """lambda 255^2 MSE + bpp (the rate in bits per pixel of the discretised likelihoods)."""
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    bits_y = -torch.log2(out["y_likelihood"]).sum()
    bits_z = -torch.log2(out["z_likelihood"]).sum()
    bpp = (bits_y + bits_z) / pixels
    mse = F.mse_loss(out["x_hat"], x)
    return {"loss": lmbda * 255.0**2 * mse + bpp, "bpp": bpp, "mse": mse, "bpp_z": bits_z / pixels}
