"""Named network sizes, and a new model config inferred from a data set."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import (
    DEFAULT_ORIENTATION,
    DEFAULT_REFINE_WIDTH,
    DiffusionConfig,
    ModelConfig,
    NetworkConfig,
    Preprocessing,
)
from ..data.dataset import CasePair
from ..data.orientation import canonical_turn
from ..errors import InputError
from ..io.images import read_image, read_label

PRESETS: dict[str, dict] = {
    # Small enough to train in minutes on a laptop CPU (tests, quick looks).
    "tiny": dict(
        encoder_widths=(8, 16, 32),
        decoder_widths=(32, 16, 8),
        latent_channels=2,
        image_latent_channels=4,
        denoiser_channels=(16, 32),
        denoiser_attention=(False, True),
        denoiser_res_blocks=1,
        time_dim=32,
        attention_heads=4,
        image_attention_heads=4,
    ),
    # A CPU-friendly model: 3 down-samplings (latent 1/8 per axis).
    "small": dict(
        encoder_widths=(16, 32, 64, 64),
        decoder_widths=(64, 64, 32, 16),
        latent_channels=2,
        image_latent_channels=4,
        denoiser_channels=(32, 64),
        denoiser_attention=(False, True),
    ),
    # The authors' reference sizes: 4 down-samplings, 1 latent channel.
    "paper": dict(),
}

#: Largest default grid side when none is given (CPU-friendly sizes).
DEFAULT_MAX_SIDE = {2: 256, 3: 96}


def network_preset(name: str, downsamplings: int | None = None, **overrides) -> NetworkConfig:
    """The named size; ``downsamplings`` keeps only that many of its finest
    encoder levels (and the matching decoder levels), for a finer latent."""
    if name not in PRESETS:
        raise InputError(f"unknown model size {name!r} (known: {', '.join(PRESETS)})")
    net = NetworkConfig(**{**PRESETS[name], **overrides})
    if downsamplings is None or downsamplings == net.downsamplings:
        return net
    if not 1 <= downsamplings <= net.downsamplings:
        raise InputError(f"size {name!r} has 1 to {net.downsamplings} down-samplings, not {downsamplings}")
    levels = downsamplings + 1
    net.encoder_widths = net.encoder_widths[:levels]
    net.decoder_widths = net.decoder_widths[-levels:]
    return net


def infer_grid(shapes: Sequence[Sequence[int]], multiple: int, max_side: int) -> tuple[int, ...]:
    """Median case shape, scaled so its longest side is at most ``max_side``,
    rounded to the nearest multiple of ``multiple`` (at least one multiple)."""
    median = np.median(np.asarray(shapes, dtype=float), axis=0)
    scale = min(1.0, max_side / median.max())
    return tuple(int(max(multiple, multiple * round(s * scale / multiple))) for s in median)


def config_for_dataset(
    pairs: Sequence[CasePair],
    *,
    size: str = "small",
    grid: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    label_values: Sequence[int] | None = None,
    intensity: str = "minmax",
    name: str = "ldseg-model",
    modality: str = "",
    diffusion: DiffusionConfig | None = None,
    architecture: str = "ldseg",
    downsamplings: int | None = None,
) -> ModelConfig:
    """A new model's config from its training data: dims and channels from the
    images, label values found in the labels (unless given), grid from the
    case sizes (unless given)."""
    if not pairs:
        raise InputError("no cases to infer a model configuration from")
    first = read_image(pairs[0].image)
    orientation = DEFAULT_ORIENTATION[first.dims]
    shapes, found = [], set()
    for pair in pairs:
        for path in pair.labels:  # every rater's: one may have marked nothing
            labels, geometry = read_label(path)
            # (a label of other dims is refused with a clear error when the data set is loaded)
            turn = canonical_turn(geometry.direction, labels.ndim, orientation if labels.ndim == first.dims else "none")
            shapes.append(turn.shape(labels.shape))
            found.update(int(v) for v in np.unique(labels))
    values = tuple(sorted(found)) if label_values is None else tuple(int(v) for v in label_values)
    if 0 not in values:
        values = (0,) + values
    # Self-attention over a 3D stage's tens of thousands of voxels costs far
    # more memory than it is worth (the authors' 3D model has none either).
    refine_width = DEFAULT_REFINE_WIDTH[first.dims] if architecture == "ldseg" else 0
    net = network_preset(size, downsamplings, image_attention=first.dims == 2, refine_width=refine_width)
    multiple = 2**net.downsamplings
    if grid is None:
        grid = infer_grid(shapes, multiple, DEFAULT_MAX_SIDE[first.dims])
    names = tuple(class_names) if class_names else ("background",) + tuple(f"label {v}" for v in values[1:])
    if len(names) != len(values):
        raise InputError(f"{len(names)} class names given for {len(values)} classes (label values {values})")
    pre = Preprocessing(
        dims=first.dims,
        channels=first.channels,
        grid=tuple(int(g) for g in grid),
        intensity=intensity,
        label_values=values,
        orientation=orientation,
    )
    config = ModelConfig(
        preprocessing=pre,
        class_names=names,
        name=name,
        modality=modality,
        network=net,
        diffusion=diffusion or DiffusionConfig(),
        architecture=architecture,
    )
    try:
        config.validate()
    except ValueError as e:
        raise InputError(str(e)) from None
    return config


def model_name_from(path: Path) -> str:
    name = Path(path).name
    for ext in (".safetensors",):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name
