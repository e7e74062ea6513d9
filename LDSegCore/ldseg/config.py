"""The model configuration: everything needed to rebuild a model and use it.

Saved as JSON inside every model file, so a model file alone says what it
segments (classes, colors, modality), how images are prepared, and how its
networks are shaped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import MODEL_FORMAT_VERSION, __version__
from .data.preprocess import Preprocessing
from .diffusion.schedule import SAMPLERS, SCHEDULES, ScheduleConfig

#: Network architectures a model file can hold: LDSeg's latent diffusion
#: (four networks, sampled), or the deterministic Res-UNet baseline that the
#: paper compares against (one forward pass, no uncertainty).
ARCHITECTURES = ("ldseg", "resunet")

#: Default colors for class 1, 2, ... (class 0, background, is never drawn).
DEFAULT_COLORS = [
    (0, 0, 0),
    (230, 80, 60),
    (60, 160, 230),
    (250, 200, 40),
    (120, 200, 90),
    (180, 100, 220),
    (240, 140, 200),
    (90, 210, 200),
    (200, 160, 110),
]


@dataclass
class NetworkConfig:
    """Shapes of the four networks (the reference code's sizes by default)."""

    latent_channels: int = 1  # label latent (reference: 1)
    image_latent_channels: int = 1  # image latent, same grid as the label latent
    encoder_widths: tuple[int, ...] = (16, 32, 64, 64, 32)  # one per level; len = downsamplings + 1
    decoder_widths: tuple[int, ...] = (32, 64, 64, 32, 16)  # coarse to fine; same length
    norm: str = "group"  # group | batch | none
    dropout: float = 0.0
    downsample: str = "conv"  # conv (strided) | maxpool
    image_attention: bool = True  # MHSA in the image encoder's last two stages
    attention_heads: int = 8
    image_latent_norm: str = "layer"  # layer (standardize) | batch | none
    denoiser_channels: tuple[int, ...] = (16, 32, 64)
    denoiser_attention: tuple[bool, ...] = (False, True, True)
    denoiser_res_blocks: int = 2
    denoiser_groups: int = 4
    time_dim: int = 64

    @property
    def downsamplings(self) -> int:
        return len(self.encoder_widths) - 1

    def validate(self) -> None:
        if len(self.encoder_widths) < 2 or len(self.decoder_widths) != len(self.encoder_widths):
            raise ValueError("encoder_widths and decoder_widths must have the same length (>= 2)")
        if len(self.denoiser_attention) != len(self.denoiser_channels):
            raise ValueError("denoiser_attention needs one entry per denoiser level")
        if min(self.encoder_widths + self.decoder_widths + self.denoiser_channels) < 1:
            raise ValueError("network widths must be positive")
        if self.latent_channels < 1 or self.image_latent_channels < 1:
            raise ValueError("latent channels must be positive")
        # a model file may hold anything: refuse what the network builder would choke on
        counts = (*self.encoder_widths, *self.decoder_widths, *self.denoiser_channels, self.latent_channels)
        counts += (self.image_latent_channels, self.attention_heads, self.denoiser_res_blocks)
        counts += (self.denoiser_groups, self.time_dim)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in counts):
            raise ValueError("network sizes must be positive whole numbers")
        if self.norm not in ("group", "batch", "none") or self.image_latent_norm not in ("layer", "batch", "none"):
            raise ValueError(f"unknown normalization {self.norm!r} / {self.image_latent_norm!r}")
        if self.downsample not in ("conv", "maxpool"):
            raise ValueError(f"unknown down-sampling {self.downsample!r} (known: conv, maxpool)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")


@dataclass
class DiffusionConfig:
    schedule: str = "cosine"
    steps: int = 1000  # T
    restandardize: bool = True  # per-sample, after every sampling step
    decoder_input: str = "paper"  # paper: z_t - eps_hat (eq. 12); x0: the x0 estimate
    sampler: str = "ddim"  # inference defaults
    sampling_steps: int = 2  # K (paper: 2 reaches the accuracy of all 1000)

    def schedule_config(self) -> ScheduleConfig:
        return ScheduleConfig(kind=self.schedule, steps=self.steps)

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}")
        if self.decoder_input not in ("paper", "x0"):
            raise ValueError(f"unknown decoder_input {self.decoder_input!r}")
        if not 1 <= self.sampling_steps <= self.steps:
            raise ValueError("sampling_steps must be between 1 and steps")


@dataclass
class ModelConfig:
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...] = ()
    name: str = "ldseg-model"
    title: str = ""
    description: str = ""
    modality: str = ""
    network: NetworkConfig = field(default_factory=NetworkConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    training: dict[str, Any] = field(default_factory=dict)  # summary of how it was trained
    architecture: str = "ldseg"  # one of ARCHITECTURES; files without it are LDSeg
    format_version: int = MODEL_FORMAT_VERSION
    engine_version: str = __version__

    def __post_init__(self):
        if not self.class_colors:
            self.class_colors = tuple(DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(self.class_names)))
        self.class_names = tuple(self.class_names)
        self.class_colors = tuple(tuple(int(v) for v in c) for c in self.class_colors)

    @property
    def dims(self) -> int:
        return self.preprocessing.dims

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def uses_diffusion(self) -> bool:
        """True for LDSeg (trained with noise, sampled at inference); False for
        the deterministic baseline, which has no latent, sampler or EMA."""
        return self.architecture == "ldseg"

    @property
    def latent_grid(self) -> tuple[int, ...]:
        f = 2**self.network.downsamplings
        return tuple(g // f for g in self.preprocessing.grid)

    def validate(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {self.architecture!r} (known: {', '.join(ARCHITECTURES)})")
        self.network.validate()
        self.diffusion.validate()
        pre = self.preprocessing
        if self.num_classes < 2:
            raise ValueError("a model needs at least two classes (background and one more)")
        if len(pre.label_values) != self.num_classes or len(self.class_colors) != self.num_classes:
            raise ValueError("class_names, class_colors and label_values must have one entry per class")
        f = 2**self.network.downsamplings
        if any(g % f for g in pre.grid):
            raise ValueError(
                f"every grid size must be a multiple of {f} "
                f"(2 ** {self.network.downsamplings} down-samplings); got {tuple(pre.grid)}"
            )

    # -- JSON ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["preprocessing"] = self.preprocessing.to_dict()
        d["network"] = asdict(self.network)
        d["diffusion"] = asdict(self.diffusion)
        d["class_names"] = list(self.class_names)
        d["class_colors"] = [list(c) for c in self.class_colors]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Rebuild from JSON; unknown keys are ignored so that later minor
        versions stay readable, wrong types raise ValueError."""
        d = dict(d)
        pre = Preprocessing.from_dict(d.pop("preprocessing"))
        net = _dataclass_from(NetworkConfig, d.pop("network", {}))
        diff = _dataclass_from(DiffusionConfig, d.pop("diffusion", {}))
        known = {f.name for f in fields(cls)} - {"preprocessing", "network", "diffusion"}
        kwargs = {k: v for k, v in d.items() if k in known}
        config = cls(preprocessing=pre, network=net, diffusion=diff, **kwargs)
        config.validate()
        return config

    def summary(self) -> dict[str, Any]:
        """What a user (or the Slicer model list) wants to see of a model."""
        return {
            "name": self.name,
            "title": self.title or self.name,
            "description": self.description,
            "architecture": self.architecture,
            "modality": self.modality,
            "dims": self.dims,
            "channels": self.preprocessing.channels,
            "grid": list(self.preprocessing.grid),
            "classes": [
                {"index": i, "name": n, "label_value": int(v), "color": list(c)}
                for i, (n, v, c) in enumerate(zip(self.class_names, self.preprocessing.label_values, self.class_colors))
            ],
            "sampler": self.diffusion.sampler,
            "sampling_steps": self.diffusion.sampling_steps,
            "format_version": self.format_version,
            "engine_version": self.engine_version,
            "training": self.training,
        }


def _dataclass_from(cls, d: dict[str, Any]):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    out = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        default = getattr(cls(), f.name)
        if isinstance(default, tuple):
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"{f.name} must be a list")
            v = tuple(v)
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise ValueError(f"{f.name} must be true or false")
        elif isinstance(default, (int, float)) and not isinstance(v, (int, float)):
            raise ValueError(f"{f.name} must be a number")
        elif isinstance(default, str) and not isinstance(v, str):
            raise ValueError(f"{f.name} must be a string")
        out[f.name] = v
    return cls(**out)
