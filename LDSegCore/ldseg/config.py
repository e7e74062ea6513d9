"""Every setting of the engine and its default, in one torch-free module.

- The model configuration (:class:`ModelConfig`), saved as JSON inside every
  model file, so a model file alone says what it segments, how images are
  prepared, how its networks are shaped and how it samples. Every setting that
  changes a model's output is a field here (schedule constants included), so
  changing a default never changes how an existing model file samples: a field
  missing from an older file takes the value that file was made with
  (:data:`LEGACY_VALUES`), not today's default.
- The options of training (:class:`TrainOptions`) and of segmenting
  (:class:`SegmentOptions`), with their ranges checked in one place; the
  command line derives its defaults and choices from them.

Importing this module does not import torch, so ``ldseg --help``, model
listings and the Slicer module can read configs without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from . import MODEL_FORMAT_VERSION, __version__

#: Network architectures a model file can hold: LDSeg's latent diffusion
#: (four networks, sampled), or the deterministic Res-UNet baseline that the
#: paper compares against (one forward pass, no uncertainty).
ARCHITECTURES = ("ldseg", "resunet")
SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ddpm", "single")
#: What the denoiser predicts: the noise (paper), the velocity v (Salimans & Ho) or the clean latent.
PREDICTIONS = ("eps", "v", "x0")
#: What the label decoder sees in training: z_t - eps_hat (paper, eq. 12) or the x0 estimate.
DECODER_INPUTS = ("paper", "x0")
NORMS = ("group", "batch", "none")
DOWNSAMPLES = ("conv", "maxpool")
#: How a latent is made: the learned encoder, or plain nearest-neighbour down-sampling (the paper's Table V ablation)
ENCODER_KINDS = ("learned", "downsample")
IMAGE_LATENT_NORMS = ("layer", "batch", "none")
INTENSITY_METHODS = ("minmax", "percentile", "zscore", "none")
#: Axis order the model sees (ldseg.data.orientation): "none" is the file's own order (2D
#: models, and model files from before this field); "RAS" turns 3D arrays so their axes run
#: toward right, anterior, superior. New models get DEFAULT_ORIENTATION for their dims.
ORIENTATIONS = ("none", "RAS")
DEFAULT_ORIENTATION = {2: "none", 3: "RAS"}
#: The boundary refiner's width for a new model, by its dims (NetworkConfig.refine_width):
#: 32 for 2D, where it beat 16 on two seeds and on the shipped GlaS grid (docs/experiments.md
#: rounds 24-26); 3D keeps 16, a wider one not measured there.
DEFAULT_REFINE_WIDTH = {2: 32, 3: 16}
PRECISIONS = ("auto", "fp32", "bf16")
#: Axes random flips may use (TrainOptions.flip_axes). "left-right": only the image axis
#: nearest the patient's left-right axis, so labels that name a part of the anatomy by its
#: place (anterior / posterior hippocampus, upper / lower) keep their meaning under the
#: flips; "all": every spatial axis; "auto": left-right for 3D images, all for 2D ones
#: (histology and photographs have no anatomical up or front). Classes named by a side
#: (ldseg.data.laterality) are swapped by a left-right flip, or rule it out when unpaired.
FLIP_AXES = ("auto", "all", "left-right")
#: Whether a sampling model's N samples are spread over the flips it was trained with
#: (SegmentOptions.flip_samples): "model" as its file says (DiffusionConfig.flip_samples), or on / off.
FLIP_SAMPLES = ("model", "on", "off")
#: Whether a new sampling model spreads its samples over its flips, by its dims, when its
#: training flipped every axis: on in 2D, where it raised the SD map's AUROC on fresh models
#: (docs/experiments.md round 29); off in 3D, where one left-right flip changed nothing (round 23).
DEFAULT_FLIP_SAMPLES = {2: True, 3: False}
OUTPUT_FORMATS = ("nifti", "nrrd", "seg.nrrd")

#: Keys of one class's standard terminology (DICOM / SNOMED CT, as DICOM SEG and 3D Slicer use it):
#: each value is a code triplet [coding scheme designator, code value, code meaning], e.g.
#: ["SCT", "5366008", "Hippocampus"]. "category" and "type" are required, the others optional.
TERMINOLOGY_KEYS = ("category", "type", "type_modifier", "region", "region_modifier")

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

#: Memory for one batch of decoded samples, in GB (segment, evaluate, the API).
DEFAULT_MEMORY_BUDGET_GB = 2.0
#: N samples for the mean and the uncertainty map (segment, evaluate, the API).
DEFAULT_SAMPLES = 10
MAX_SEED = 2**63 - 1


@dataclass
class Preprocessing:
    """How images and labels are turned into model tensors (and back)."""

    dims: int
    channels: int
    grid: tuple[int, ...]
    intensity: str = "minmax"
    percentiles: tuple[float, float] = (0.5, 99.5)
    label_values: tuple[int, ...] = field(default=(0, 1))
    orientation: str = "none"  # ORIENTATIONS

    def __post_init__(self):
        self.grid = tuple(self.grid)
        self.percentiles = tuple(self.percentiles)
        self.label_values = tuple(self.label_values)
        self._validate()
        # Plain Python numbers (numpy ints from array shapes are common).
        self.dims, self.channels = int(self.dims), int(self.channels)
        self.grid = tuple(int(s) for s in self.grid)
        self.percentiles = tuple(float(p) for p in self.percentiles)
        self.label_values = tuple(int(v) for v in self.label_values)

    def _validate(self) -> None:
        """Raise ValueError describing the first invalid field."""
        if not _is_int(self.dims) or self.dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, not {self.dims!r}")
        if not _is_int(self.channels) or self.channels < 1:
            raise ValueError(f"channels must be a positive integer, not {self.channels!r}")
        if len(self.grid) != self.dims or not all(_is_int(s) and s >= 2 for s in self.grid):
            raise ValueError(f"grid must be {self.dims} integers >= 2, not {self.grid!r}")
        if self.intensity not in INTENSITY_METHODS:
            raise ValueError(f"intensity must be one of {INTENSITY_METHODS}, not {self.intensity!r}")
        low_high = self.percentiles
        if len(low_high) != 2 or not all(_is_number(p) for p in low_high) or not 0 <= low_high[0] < low_high[1] <= 100:
            raise ValueError(f"percentiles must be two numbers 0 <= low < high <= 100, not {low_high!r}")
        values = self.label_values
        if len(values) < 2 or not all(_is_int(v) for v in values):
            raise ValueError(f"label_values must list at least two integers (background first), not {values!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"label_values must be unique, not {values!r}")
        if self.orientation not in ORIENTATIONS or (self.orientation != "none" and self.dims != 3):
            raise ValueError(f"orientation must be 'none', or 'RAS' for 3D images, not {self.orientation!r}")

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.label_values)

    def to_dict(self) -> dict:
        """JSON-safe dict (lists instead of tuples)."""
        return {
            "dims": int(self.dims),
            "channels": int(self.channels),
            "grid": [int(s) for s in self.grid],
            "intensity": self.intensity,
            "percentiles": [float(p) for p in self.percentiles],
            "label_values": [int(v) for v in self.label_values],
            "orientation": self.orientation,
        }

    @classmethod
    def from_dict(cls, d) -> "Preprocessing":
        """Build from :meth:`to_dict` output; ValueError if invalid. A dict
        without ``orientation`` predates it: arrays in their stored order."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocessing must be a dict, not {type(d).__name__}")
        required = {"dims", "channels", "grid"}
        known = required | {"intensity", "percentiles", "label_values", "orientation"}
        missing = required - set(d)
        if missing:
            raise ValueError(f"preprocessing lacks {sorted(missing)}")
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"preprocessing has unknown keys {sorted(unknown)}")
        kwargs = dict(d)
        for key in ("grid", "percentiles", "label_values"):
            if key in kwargs:
                if not isinstance(kwargs[key], (list, tuple)):
                    raise ValueError(f"{key} must be a list, not {kwargs[key]!r}")
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


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
    image_attention: bool = True  # MHSA in the image encoder's last image_attention_levels stages
    attention_heads: int = 8  # the denoiser's self-attention
    # The image encoder's (the 2D reference's 8; 2 trained 1.6x faster but lost
    # 0.03-0.07 Dice, docs/experiments.md round 14). Files from before this field
    # used attention_heads here (ModelConfig.from_dict).
    image_attention_heads: int = 8
    # The image encoder's coarsest stages with MHSA (when image_attention). The
    # reference has 2; 1 trains 2x faster per epoch and gained +0.03 held-out Dice
    # on the few-cases task at the same budget (docs/experiments.md round 16).
    image_attention_levels: int = 1
    image_latent_norm: str = "layer"  # layer (standardize) | batch | none
    denoiser_channels: tuple[int, ...] = (16, 32, 64)
    denoiser_attention: tuple[bool, ...] = (False, True, True)
    denoiser_res_blocks: int = 2
    denoiser_groups: int = 4
    time_dim: int = 64
    refine_width: int = 16  # boundary refiner's width (0: none, the paper's decoder; new models: DEFAULT_REFINE_WIDTH)
    label_encoder: str = "learned"  # ENCODER_KINDS; "downsample" is the paper's LDSeg(ld) ablation
    image_encoder: str = "learned"  # ENCODER_KINDS; "downsample" is the paper's LDSeg(id) ablation

    @property
    def downsamplings(self) -> int:
        return len(self.encoder_widths) - 1

    def validate(self) -> None:
        if len(self.encoder_widths) < 2 or len(self.decoder_widths) != len(self.encoder_widths):
            raise ValueError("encoder_widths and decoder_widths must have the same length (>= 2)")
        if len(self.denoiser_attention) != len(self.denoiser_channels) or not self.denoiser_channels:
            raise ValueError("denoiser_attention needs one entry per denoiser level")
        if min(self.encoder_widths + self.decoder_widths + self.denoiser_channels) < 1:
            raise ValueError("network widths must be positive")
        if self.latent_channels < 1 or self.image_latent_channels < 1:
            raise ValueError("latent channels must be positive")
        _choice("norm", self.norm, NORMS)
        _choice("downsample", self.downsample, DOWNSAMPLES)
        _choice("image_latent_norm", self.image_latent_norm, IMAGE_LATENT_NORMS)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        for name in ("attention_heads", "image_attention_heads", "denoiser_res_blocks", "denoiser_groups", "time_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        # a model file may hold anything: sizes must be whole numbers (16.5 channels builds nothing)
        sizes = (*self.encoder_widths, *self.decoder_widths, *self.denoiser_channels, self.latent_channels)
        sizes += (
            self.image_latent_channels,
            self.attention_heads,
            self.image_attention_heads,
            self.image_attention_levels,
            self.denoiser_res_blocks,
        )
        sizes += (self.denoiser_groups, self.time_dim)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
            raise ValueError("network sizes must be whole numbers")
        if not 1 <= self.image_attention_levels <= len(self.encoder_widths):
            raise ValueError(
                f"image_attention_levels must be 1 to {len(self.encoder_widths)} (the encoder's stages), "
                f"not {self.image_attention_levels}"
            )
        if self.refine_width < 0:
            raise ValueError("refine_width must be 0 (no refiner) or positive")
        _choice("label_encoder", self.label_encoder, ENCODER_KINDS)
        _choice("image_encoder", self.image_encoder, ENCODER_KINDS)


@dataclass(frozen=True)
class ScheduleConfig:
    """The noise schedule alone (what :class:`~ldseg.diffusion.schedule.NoiseSchedule` needs)."""

    kind: str = "cosine"
    steps: int = 1000  # T
    beta_start: float = 1e-4  # linear schedule
    beta_end: float = 0.02
    cosine_s: float = 0.008
    max_beta: float = 0.999  # Nichol & Dhariwal's clip, keeps alpha_bar[T] > 0


@dataclass
class DiffusionConfig:
    schedule: str = ScheduleConfig.kind
    steps: int = ScheduleConfig.steps  # T
    beta_start: float = ScheduleConfig.beta_start  # linear schedule
    beta_end: float = ScheduleConfig.beta_end
    cosine_s: float = ScheduleConfig.cosine_s  # cosine schedule offset
    max_beta: float = ScheduleConfig.max_beta  # cosine schedule clip
    prediction: str = "v"  # what the denoiser predicts (PREDICTIONS; the paper: eps)
    restandardize: bool = True  # per-sample, after every sampling step
    decoder_input: str = "x0"  # paper: z_t - eps_hat (eq. 12); x0: the x0 estimate
    # training: the fraction of each batch drawn at t = T instead of U{1..T}
    # (paper: 0). K = 2 sampling decides its sample in the one step from T.
    terminal_fraction: float = 0.0
    sampler: str = "ddim"  # inference defaults
    sampling_steps: int = 2  # K (paper: 2 reaches the accuracy of all 1000)
    # Spread the N samples over the image flips the model was trained with (sample k sees
    # the image flipped by the (k mod F)-th combination, its output flipped back), so the
    # samples also differ where the answer depends on the view: the SD map then finds more
    # of the wrong voxels (docs/experiments.md rounds 23 and 29). Set by the trainer; files
    # without the field sample without flips, as they were measured.
    flip_samples: bool = False

    def schedule_config(self) -> ScheduleConfig:
        return ScheduleConfig(
            kind=self.schedule,
            steps=self.steps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            cosine_s=self.cosine_s,
            max_beta=self.max_beta,
        )

    def validate(self) -> None:
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("sampler", self.sampler, SAMPLERS)
        _choice("prediction", self.prediction, PREDICTIONS)
        _choice("decoder_input", self.decoder_input, DECODER_INPUTS)
        if self.steps < 1:
            raise ValueError("the number of diffusion steps T must be at least 1")
        if not 1 <= self.sampling_steps <= self.steps:
            raise ValueError("sampling_steps must be between 1 and steps")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError("need 0 < beta_start <= beta_end < 1")
        if not 0 <= self.cosine_s or not 0 < self.max_beta < 1:
            raise ValueError("need cosine_s >= 0 and 0 < max_beta < 1")
        _finite("terminal_fraction", self.terminal_fraction, low=0.0, high=1.0)
        if not isinstance(self.flip_samples, bool):
            raise ValueError(f"flip_samples must be true or false, not {self.flip_samples!r}")


#: The paper's own design: eps-prediction, the decoder on z_t - eps_hat (eq. 12), no refiner.
_PAPER_DESIGN: dict[str, Any] = {
    "prediction": "eps",
    "decoder_input": "paper",
    "refine_width": 0,
    "terminal_fraction": 0.0,
    "image_attention_levels": 2,
}

#: The recipes a new LDSeg model can start from: the defaults above (chosen
#: by the controlled runs of docs/experiments.md), or the paper's own design
#: (an honest baseline, and what papers that cite LDSeg describe).
RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "paper": {**_PAPER_DESIGN},
    # the paper's Table V ablations of its own design: encoders replaced by plain down-sampling
    "paper-ld": {**_PAPER_DESIGN, "label_encoder": "downsample"},
    "paper-id": {**_PAPER_DESIGN, "image_encoder": "downsample"},
    "paper-ld-id": {**_PAPER_DESIGN, "label_encoder": "downsample", "image_encoder": "downsample"},
}

#: Training options a recipe sets where no flag gives them: the paper trained
#: with random flips as its only augmentation.
RECIPE_TRAINING: dict[str, dict[str, Any]] = {
    name: {"intensity_augment": False} for name in RECIPES if name.startswith("paper")
}

#: The model-config fields a recipe sets: DiffusionConfig's, NetworkConfig's.
RECIPE_DIFFUSION_FIELDS = ("prediction", "decoder_input", "terminal_fraction")
RECIPE_NETWORK_FIELDS = ("refine_width", "label_encoder", "image_encoder", "image_attention_levels")

#: Values of fields that model files of an earlier format did not store: a
#: missing field means the file was made when the engine used this value.
LEGACY_VALUES: dict[str, dict[str, Any]] = {
    "diffusion": {
        "schedule": "cosine",
        "steps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "cosine_s": 0.008,
        "max_beta": 0.999,
        "prediction": "eps",
        "restandardize": True,
        "decoder_input": "paper",
        "terminal_fraction": 0.0,
        "sampler": "ddim",
        "sampling_steps": 2,
        "flip_samples": False,
    },
    "network": {"refine_width": 0, "label_encoder": "learned", "image_encoder": "learned", "image_attention_levels": 2},
    "model": {"architecture": "ldseg"},
}


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
    architecture: str = "ldseg"  # one of ARCHITECTURES
    # Optional: one entry per class (None for a class without one, e.g. background), each a dict of
    # TERMINOLOGY_KEYS -> code triplet; empty when the model declares no terminology.
    class_terminology: tuple[Any, ...] = ()
    format_version: int = MODEL_FORMAT_VERSION
    engine_version: str = __version__

    def __post_init__(self):
        if not self.class_colors:
            self.class_colors = tuple(DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(self.class_names)))
        self.class_names = tuple(self.class_names)
        self.class_colors = tuple(tuple(int(v) for v in c) for c in self.class_colors)
        self.class_terminology = tuple(self.class_terminology or ())

    @property
    def dims(self) -> int:
        return self.preprocessing.dims

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def latent_grid(self) -> tuple[int, ...]:
        f = 2**self.network.downsamplings
        return tuple(g // f for g in self.preprocessing.grid)

    def validate(self) -> None:
        _choice("architecture", self.architecture, ARCHITECTURES)
        self.network.validate()
        self.diffusion.validate()
        pre = self.preprocessing
        if self.num_classes < 2:
            raise ValueError("a model needs at least two classes (background and one more)")
        if len(pre.label_values) != self.num_classes or len(self.class_colors) != self.num_classes:
            raise ValueError("class_names, class_colors and label_values must have one entry per class")
        if self.class_terminology:
            if len(self.class_terminology) != self.num_classes:
                raise ValueError("class_terminology must have one entry per class (null for none)")
            for name, entry in zip(self.class_names, self.class_terminology):
                _validate_terminology(name, entry)
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
        d["class_terminology"] = [_terminology_json(t) for t in self.class_terminology]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Rebuild from JSON; unknown keys are ignored so that later minor
        versions stay readable, wrong types raise ValueError, and fields an
        older file lacks take their :data:`LEGACY_VALUES`."""
        if not isinstance(d, dict):
            raise ValueError("the model config must be a JSON object")
        d = dict(d)
        if "preprocessing" not in d:
            raise ValueError("the model config lacks preprocessing")
        pre = Preprocessing.from_dict(d.pop("preprocessing"))
        stored = _object(d.pop("network", {}))
        if "image_attention_heads" not in stored and "attention_heads" in stored:
            # an older file's image encoder used the one head count for both
            stored = {**stored, "image_attention_heads": stored["attention_heads"]}
        net = _dataclass_from(NetworkConfig, {**LEGACY_VALUES["network"], **stored})
        diff = _dataclass_from(DiffusionConfig, {**LEGACY_VALUES["diffusion"], **_object(d.pop("diffusion", {}))})
        d = {**LEGACY_VALUES["model"], **d}
        known = {f.name for f in fields(cls)} - {"preprocessing", "network", "diffusion"}
        kwargs = {k: v for k, v in d.items() if k in known}
        if not isinstance(kwargs.get("class_terminology", []), (list, tuple)):
            raise ValueError("class_terminology must be a list")
        config = cls(preprocessing=pre, network=net, diffusion=diff, **kwargs)
        config.validate()
        return config

    def summary(self) -> dict[str, Any]:
        """What a user (or the Slicer model list) wants to see of a model."""
        classes = [
            {"index": i, "name": n, "label_value": int(v), "color": list(c)}
            for i, (n, v, c) in enumerate(zip(self.class_names, self.preprocessing.label_values, self.class_colors))
        ]
        for entry, terminology in zip(classes, self.class_terminology):
            if terminology:
                entry["terminology"] = _terminology_json(terminology)
        return {
            "name": self.name,
            "title": self.title or self.name,
            "description": self.description,
            "architecture": self.architecture,
            "modality": self.modality,
            "dims": self.dims,
            "channels": self.preprocessing.channels,
            "grid": list(self.preprocessing.grid),
            "classes": classes,
            "sampler": self.diffusion.sampler,
            "sampling_steps": self.diffusion.sampling_steps,
            "format_version": self.format_version,
            "engine_version": self.engine_version,
            "training": self.training,
        }


def _validate_terminology(class_name: str, entry: Any) -> None:
    """One class's terminology: None, or TERMINOLOGY_KEYS -> [scheme, value, meaning] (strings)."""
    if entry is None:
        return
    if not isinstance(entry, dict):
        raise ValueError(f"class_terminology of {class_name!r} must be an object or null")
    unknown = sorted(set(entry) - set(TERMINOLOGY_KEYS))
    if unknown:
        raise ValueError(f"class_terminology of {class_name!r}: unknown keys {unknown} (known: {TERMINOLOGY_KEYS})")
    for key in ("category", "type"):
        if key not in entry:
            raise ValueError(f"class_terminology of {class_name!r} needs {key!r}")
    for key, code in entry.items():
        if (
            not isinstance(code, (list, tuple))
            or len(code) != 3
            or not all(isinstance(part, str) and part.strip() for part in code)
        ):
            raise ValueError(
                f"class_terminology of {class_name!r}: {key} must be [coding scheme, code value, code meaning]"
            )


def _terminology_json(entry: Any) -> Any:
    return None if entry is None else {k: [str(p) for p in v] for k, v in entry.items()}


@dataclass(frozen=True)
class IntensityJitter:
    """Strengths of ``--intensity-augment`` (ldseg.data.augment.random_intensity),
    as fractions of each image's intensity range: about what stain, scanner
    and protocol changes do to an image of the same anatomy."""

    contrast: float = 0.25  # per-channel factor in 1 +- this, about the channel's mean
    brightness: float = 0.1  # per-channel offset in +- this
    gamma: float = 0.4  # log of the gamma exponent in +- this (0.67 to 1.49) ...
    gamma_p: float = 0.3  # ... for this share of images
    noise: float = 0.1  # Gaussian noise SD up to this ...
    noise_p: float = 0.3  # ... for this share of images


INTENSITY_JITTER = IntensityJitter()


#: Samples per case of the energy score (``TrainOptions.energy_weight``): two,
#: the fewest it needs; each one more costs a denoiser pass per step.
ENERGY_SAMPLES = 2

#: Epochs of a training without --epochs and without a --time-budget (with a
#: budget and no --epochs, training runs for the budget: a user who says
#: "twenty minutes" gets twenty minutes, whatever an epoch costs).
DEFAULT_EPOCHS = 100


@dataclass(frozen=True)
class TrainOptions:
    """How ``ldseg train`` trains (each field is a ``--flag`` of the same name)."""

    epochs: int | None = None  # most epochs (None: DEFAULT_EPOCHS, or with a time_budget as many as it allows)
    time_budget: float = 0.0  # minutes of training (0: no limit; stops after the epoch that reaches it)
    batch_size: int = 4
    lr: float = 1e-3
    lr_decay: float = 0.99  # per epoch (exponential decay, paper)
    gamma: float = 2.0  # Dice loss weight
    lam: float = 1.0  # denoiser MSE weight
    latent_l1: float = 0.0  # SDSeg latent-estimation loss weight (0: off)
    energy_weight: float = 0.0  # weight of the energy score of samples drawn from t = T (0: off)
    ema_decay: float = 0.999
    augment: bool = True  # random flips, and the intensity changes below (False: no augmentation at all)
    intensity_augment: bool = True  # random gamma, contrast, brightness, noise (INTENSITY_JITTER)
    flip_axes: str = "auto"  # FLIP_AXES
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    val_samples: int = 1
    val_steps: int = 2
    validate_every: int = 1

    def __post_init__(self):
        self.validate()  # an options object is valid, or it does not exist

    @property
    def epoch_limit(self) -> int | None:
        """The most epochs to train; None: no limit, the time budget ends training."""
        if self.epochs is not None:
            return self.epochs
        return None if self.time_budget > 0 else DEFAULT_EPOCHS

    def validate(self) -> None:
        if self.epochs is not None:
            _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("val_samples", self.val_samples, 1)
        _at_least("val_steps", self.val_steps, 1)
        _at_least("validate_every", self.validate_every, 1)
        _finite("time_budget", self.time_budget, low=0.0)
        _finite("lr", self.lr, low=0.0, low_open=True)
        _finite("lr_decay", self.lr_decay, low=0.0, high=1.0, low_open=True)
        for name in ("gamma", "lam", "latent_l1", "energy_weight"):
            _finite(name, getattr(self, name), low=0.0)
        _finite("ema_decay", self.ema_decay, low=0.0, high=1.0)
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be between 0 and {MAX_SEED}")
        _choice("precision", self.precision, PRECISIONS)
        _choice("flip_axes", self.flip_axes, FLIP_AXES)


def resolve_flip_axes(flip_axes: str, dims: int) -> str:
    """``"all"`` or ``"left-right"``: what ``flip_axes`` means for images of ``dims`` dimensions."""
    _choice("flip_axes", flip_axes, FLIP_AXES)
    if flip_axes == "auto":
        return "left-right" if dims == 3 else "all"
    return flip_axes


@dataclass(frozen=True)
class SegmentOptions:
    """How one image is segmented (``ldseg segment``, ``ldseg evaluate``, the API).

    ``steps`` and ``sampler`` None take the model's own; ``memory_budget`` is
    in GB for one batch of decoded samples, given to the Segmenter when it is
    made (it sizes the sample batches of every image it segments).
    ``save_samples``: also keep every sample's label map and write it into the
    result set (off by default: N full-resolution maps cost memory and disk).
    """

    samples: int = DEFAULT_SAMPLES
    steps: int | None = None
    sampler: str | None = None
    eta: float = 0.0
    seed: int | None = 0  # None: a fresh random seed
    memory_budget: float = DEFAULT_MEMORY_BUDGET_GB
    save_samples: bool = False
    flip_samples: str = "model"  # FLIP_SAMPLES

    def __post_init__(self):
        self.validate()  # an options object is valid, or it does not exist

    def validate(self) -> None:
        _at_least("samples", self.samples, 1)
        if self.steps is not None:
            _at_least("steps", self.steps, 1)
        if self.sampler is not None:
            _choice("sampler", self.sampler, SAMPLERS)
        _finite("eta", self.eta, low=0.0)
        if self.seed is not None and not (_is_int(self.seed) and 0 <= self.seed <= MAX_SEED):
            raise ValueError(f"seed must be an integer between 0 and {MAX_SEED}")
        _finite("memory_budget", self.memory_budget, low=0.0, low_open=True)
        if not isinstance(self.save_samples, bool):
            raise ValueError(f"save_samples must be true or false, not {self.save_samples!r}")
        _choice("flip_samples", self.flip_samples, FLIP_SAMPLES)


# -- helpers ---------------------------------------------------------------------


def _choice(name: str, value: Any, known: tuple[str, ...]) -> None:
    if value not in known:
        raise ValueError(f"unknown {name} {value!r} (known: {', '.join(known)})")


def _at_least(name: str, value: Any, low: int) -> None:
    if not _is_int(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")


def _finite(name: str, value: Any, low: float, high: float | None = None, low_open: bool = False) -> None:
    ok = _is_number(value) and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        raise ValueError(f"{name} must be a finite number {bounds}, not {value!r}")


def _object(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError("network and diffusion must be JSON objects")
    return d


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
        elif isinstance(default, (int, float)) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{f.name} must be a number")
        elif isinstance(default, str) and not isinstance(v, str):
            raise ValueError(f"{f.name} must be a string")
        out[f.name] = v
    return cls(**out)


def _is_int(value) -> bool:
    """Integer but not bool (JSON true must not pass as 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """Finite real number, not bool."""
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )
