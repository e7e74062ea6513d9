"""The LDSeg model: label encoder, image encoder, conditional denoiser and
label decoder, built from a :class:`~ldseg.config.ModelConfig`.

The networks know no diffusion math: the denoiser maps (z_t, z_i, t) to its
prediction, and the training pass takes the schedule that noises z_0 and
reads the prediction (:mod:`ldseg.diffusion.schedule`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..diffusion.schedule import NoiseSchedule, standardize
from .decoder import LabelDecoder
from .denoiser import Denoiser
from .downsamplers import ImageDownsampler, LabelDownsampler
from .encoders import ImageEncoder, LabelEncoder
from .refiner import BoundaryRefiner


class LDSegNet(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        dims, net = config.dims, config.network
        channels = config.preprocessing.channels
        if net.label_encoder == "downsample":
            self.label_encoder = LabelDownsampler(config.num_classes, net.latent_channels, net.downsamplings)
        else:
            self.label_encoder = LabelEncoder(dims, config.num_classes, net)
        if net.image_encoder == "downsample":  # the denoiser is then conditioned on the image's own channels
            self.image_encoder = ImageDownsampler(net.downsamplings)
            self.denoiser = Denoiser(dims, replace(net, image_latent_channels=channels))
        else:
            self.image_encoder = ImageEncoder(dims, channels, net)
            self.denoiser = Denoiser(dims, net)
        self.decoder = LabelDecoder(dims, config.num_classes, net)
        self.refiner = (
            BoundaryRefiner(dims, config.preprocessing.channels, config.num_classes, net.refine_width, net.norm)
            if net.refine_width > 0
            else None
        )

    def encode_label(self, labels: torch.Tensor) -> torch.Tensor:
        """Class-index map (B, *grid) -> label latent z_0 (standardized by the learned encoder)."""
        if isinstance(self.label_encoder, LabelDownsampler):
            return self.label_encoder(labels)
        onehot = F.one_hot(labels, self.config.num_classes).movedim(-1, 1).float()
        return self.label_encoder(onehot)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)

    def denoise(self, z_t: torch.Tensor, z_i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The denoiser's prediction at levels t (in the model's parameterization)."""
        return self.denoiser(z_t, z_i, t)

    def decode(self, z: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """Latent -> class logits on the model grid (refined at boundaries with
        the image where the model has a refiner)."""
        return self.refine(self.decoder(z), image)

    def autoencode(self, labels: torch.Tensor, image: torch.Tensor | None = None) -> torch.Tensor:
        """Class-index map (B, *grid) -> label encoder -> z_0 -> decoder: class
        logits on the model grid, no diffusion. The accuracy the latent allows
        (a sampled z_0 can at best reproduce the label's own)."""
        return self.decode(self.encode_label(labels), image)

    def refine(self, coarse: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        if self.refiner is None:
            return coarse
        if image is None:
            raise ValueError("this model's decoder refines with the image: pass it to decode()")
        return self.refiner(coarse, image)

    def forward(
        self,
        image: torch.Tensor,
        labels: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        schedule: NoiseSchedule,
        denoiser_autocast: bool = True,
        terminal_noise: torch.Tensor | None = None,
    ):
        """One end-to-end training pass (paper, Algorithm 1), as one call so
        DistributedDataParallel sees every network.

        ``noise`` is drawn independently per sample by the caller.
        ``denoiser_autocast`` False runs the denoiser in fp32 inside an
        autocast region (the precision policy's choice). Returns (logits,
        denoiser output, z_0, z_t, x0 estimate, coarse logits before the
        refiner, terminal samples).

        ``terminal_noise`` (m, B, *latent), optional: m more noises per case,
        denoised from t = T, the step that decides a K = 2 sample; their x0
        estimates, standardized as the sampler does, are the terminal samples
        (m, B, *latent), else None.
        """
        z0 = self.encode_label(labels)
        z_i = self.encode_image(image)
        z_t = schedule.add_noise(z0, noise, t)
        output = self._denoise(z_t, z_i, t, denoiser_autocast)
        x0, eps = schedule.split(z_t, output, t)
        terminal = None
        if terminal_noise is not None:
            m = terminal_noise.shape[0]
            t_end = torch.full((m * t.shape[0],), schedule.T, dtype=t.dtype, device=t.device)
            z_end = schedule.add_noise(
                z0.detach().repeat(m, *[1] * (z0.dim() - 1)), terminal_noise.flatten(0, 1), t_end
            )
            out_end = self._denoise(z_end, z_i.repeat(m, *[1] * (z_i.dim() - 1)), t_end, denoiser_autocast)
            terminal = standardize(schedule.split(z_end, out_end, t_end)[0].float()).unflatten(0, (m, -1))
        if self.config.diffusion.decoder_input == "paper":
            z_dn = z_t - eps  # eq. 12: subtract the predicted noise
        else:
            z_dn = standardize(x0)  # the x0 estimate, standardized as the sampler does at inference
        coarse = self.decoder(z_dn)
        return self.refine(coarse, image), output, z0, z_t, x0, coarse, terminal

    def _denoise(self, z_t, z_i, t, in_autocast: bool) -> torch.Tensor:
        """The denoiser, in fp32 inside an autocast region where the precision policy says so."""
        if not in_autocast and torch.is_autocast_enabled(z_t.device.type):
            with torch.autocast(z_t.device.type, enabled=False):
                return self.denoiser(z_t.float(), z_i.float(), t)
        return self.denoiser(z_t, z_i, t)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
