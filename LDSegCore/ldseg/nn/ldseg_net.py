"""The LDSeg model: label encoder, image encoder, conditional denoiser and
label decoder, built from a :class:`~ldseg.config.ModelConfig`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..diffusion.schedule import standardize
from .decoder import LabelDecoder
from .denoiser import Denoiser
from .encoders import ImageEncoder, LabelEncoder


class LDSegNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        dims, net = config.dims, config.network
        self.label_encoder = LabelEncoder(dims, config.num_classes, net)
        self.image_encoder = ImageEncoder(dims, config.preprocessing.channels, net)
        self.denoiser = Denoiser(dims, net)
        self.decoder = LabelDecoder(dims, config.num_classes, net)
        self.denoiser_fp32 = False  # set by the trainer on the CPU

    def encode_label(self, labels: torch.Tensor) -> torch.Tensor:
        """Class-index map (B, *grid) -> standardized label latent z_0."""
        onehot = F.one_hot(labels, self.config.num_classes).movedim(-1, 1).float()
        return self.label_encoder(onehot)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)

    def predict_noise(self, z_t: torch.Tensor, z_i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.denoiser(z_t, z_i, t)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> class logits on the model grid."""
        return self.decoder(z)

    def forward(
        self,
        image: torch.Tensor,
        labels: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        sqrt_ab: torch.Tensor,
        sqrt_1m_ab: torch.Tensor,
    ):
        """One end-to-end training pass (paper, Algorithm 1).

        ``noise`` is drawn independently per sample by the caller; ``sqrt_ab``
        and ``sqrt_1m_ab`` are the schedule's coefficients at ``t`` shaped to
        broadcast. Returns (logits, predicted noise, z_0, z_t).
        """
        z0 = self.encode_label(labels)
        z_i = self.encode_image(image)
        z_t = sqrt_ab * z0 + sqrt_1m_ab * noise
        if self.denoiser_fp32 and torch.is_autocast_enabled(z_t.device.type):
            # oneDNN's bf16 Conv3d weight gradient on 2x2x2 inputs (the
            # denoiser's lowest level) is sometimes inf/NaN; the latent is
            # small, so fp32 here costs little.
            with torch.autocast(z_t.device.type, enabled=False):
                eps_hat = self.denoiser(z_t.float(), z_i.float(), t)
        else:
            eps_hat = self.denoiser(z_t, z_i, t)
        if self.config.diffusion.decoder_input == "paper":
            z_dn = z_t - eps_hat  # eq. 12: subtract the predicted noise
        else:
            # x0 estimate, standardized as the sampler does at inference
            z_dn = standardize((z_t - sqrt_1m_ab * eps_hat) / sqrt_ab)
        return self.decoder(z_dn), eps_hat, z0, z_t


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
