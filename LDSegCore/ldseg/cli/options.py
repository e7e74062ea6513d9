"""The command line's flags for the config's option classes.

Defaults and choices come from :mod:`ldseg.config` (torch-free), so the
command line cannot drift from the API: one flag per field, named after it.
Values are checked where the option classes check them, and a bad value is a
one-line error naming the flag.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from ..config import (
    DECODER_INPUTS,
    DEFAULT_EPOCHS,
    DEFAULT_REFINE_WIDTH,
    FLIP_AXES,
    FLIP_SAMPLES,
    PRECISIONS,
    PREDICTIONS,
    RECIPE_DIFFUSION_FIELDS,
    RECIPE_NETWORK_FIELDS,
    RECIPE_TRAINING,
    RECIPES,
    SAMPLERS,
    SCHEDULES,
    DiffusionConfig,
    NetworkConfig,
    SegmentOptions,
    TrainOptions,
)
from ..errors import InputError

#: Help text of each option field (every field of the class must be here: a test checks it).
TRAIN_HELP = {
    "epochs": f"most epochs to train (default {DEFAULT_EPOCHS}; with --time-budget: no limit but the budget)",
    "time_budget": "minutes of training; stops after the epoch that reaches it (0: no limit)",
    "batch_size": "cases per step",
    "lr": "Adam learning rate",
    "lr_decay": "learning-rate factor per epoch",
    "gamma": "Dice loss weight",
    "lam": "denoiser MSE weight",
    "latent_l1": "SDSeg latent-estimation loss weight (0: off)",
    "energy_weight": "weight of an energy score (a proper scoring rule) on two samples drawn from pure noise at "
    "t = T, the step that decides a K = 2 sample: it trains that step to draw from the label's distribution "
    "instead of its mean (0: off, the paper's MSE alone)",
    "ema_decay": "EMA decay of the denoiser",
    "augment": "random flips and, with --intensity-augment, intensity changes (--no-augment: no augmentation at all)",
    "intensity_augment": "random gamma, per-channel contrast and brightness, and Gaussian noise on training images",
    "flip_axes": "axes the flips use: left-right (only the patient's left-right axis, so labels named by their "
    "place in the anatomy keep their meaning), all, or auto (left-right for 3D, all for 2D); a left-right "
    "flip swaps classes named as a left/right pair (kidney_left, kidney_right) and is not made at all "
    "when a class names a side without a partner",
    "seed": "seed of weights, data order, noise",
    "precision": "bf16 autocast where the hardware supports it (auto), or force one",
    "val_samples": "samples N per validation case",
    "val_steps": "sampling steps K in validation",
    "validate_every": "validate every this many epochs (and after the last)",
}
SEGMENT_HELP = {
    "samples": "N samples for the mean and the uncertainty (1: no SD)",
    "steps": "sampling steps K (default: the model's)",
    "sampler": "sampler (default: the model's)",
    "eta": "DDIM eta (0: deterministic steps)",
    "seed": "seed of the samples' noise",
    "memory_budget": "GB for one batch of decoded samples; results are resampled to the input grid in slabs of "
    "at most min(this, 0.25 GB)",
    "flip_samples": "spread the samples over the image flips the model was trained with, so the SD map also shows "
    "where the answer depends on the view (model: as its file says; on; off)",
    "save_samples": "also write every sample's label map (<stem>_samples: one component per sample, the labels' "
    "values and geometry)",
}
#: Segment options that only say what a result set holds: ``ldseg evaluate`` writes none, so has no flag for them.
RESULT_SET_OPTIONS = ("save_samples",)
#: Field -> flag where the flag is not the field's name.
FLAG_NAMES = {"lam": "--lambda", "memory_budget": "--memory-budget"}
CHOICES = {"precision": PRECISIONS, "sampler": SAMPLERS, "flip_axes": FLIP_AXES, "flip_samples": FLIP_SAMPLES}
METAVARS = {"time_budget": "MINUTES", "memory_budget": "GB"}


def flag(field_name: str) -> str:
    return FLAG_NAMES.get(field_name, "--" + field_name.replace("_", "-"))


def _add_fields(parser: argparse.ArgumentParser, cls, help_texts: dict[str, str], skip=()) -> None:
    defaults = cls()
    for f in fields(cls):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name)
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": help_texts[f.name]}
        if isinstance(default, bool):
            parser.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        elif isinstance(default, float):
            kwargs["type"] = float
        elif isinstance(default, int) or f.name in ("steps", "seed", "epochs"):
            kwargs["type"] = int
        if f.name in METAVARS:
            kwargs["metavar"] = METAVARS[f.name]
        parser.add_argument(flag(f.name), **kwargs)


def _build(cls, args: argparse.Namespace, skip=()):
    values = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in skip}
    try:
        return cls(**values)
    except ValueError as e:  # the option classes name the field first: say the flag instead
        text = str(e)
        for f in fields(cls):
            if text.startswith(f.name + " "):
                text = flag(f.name) + text[len(f.name) :]
                break
        raise InputError(text) from None


#: Training options whose default depends on the recipe: their flags default to None (not given).
RECIPE_TRAINING_OPTIONS = ("intensity_augment",)


def add_train_options(parser: argparse.ArgumentParser) -> None:
    _add_fields(parser, TrainOptions, TRAIN_HELP, skip=("precision", *RECIPE_TRAINING_OPTIONS))
    for name in RECIPE_TRAINING_OPTIONS:
        default = getattr(TrainOptions(), name)
        text = f"{TRAIN_HELP[name]} (default {'on' if default else 'off'}; off with --recipe paper*)"
        parser.add_argument(flag(name), dest=name, default=None, action=argparse.BooleanOptionalAction, help=text)


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The training options of the flags; one a flag did not give comes from
    the recipe of a new model (``--init`` fine-tunes: the config's default)."""
    values = dict(vars(args))
    recipe = {} if getattr(args, "init", None) else RECIPE_TRAINING.get(getattr(args, "recipe", "default"), {})
    for name in RECIPE_TRAINING_OPTIONS:
        if values.get(name) is None:
            values[name] = recipe.get(name, getattr(TrainOptions(), name))
    return _build(TrainOptions, argparse.Namespace(**values))


def add_segment_options(parser: argparse.ArgumentParser, *, result_set: bool = True) -> None:
    """The sampling flags, and with ``result_set`` those of what a result set holds
    (without: no flag, and the parsed arguments carry the config's default)."""
    skip = () if result_set else RESULT_SET_OPTIONS
    _add_fields(parser, SegmentOptions, SEGMENT_HELP, skip=skip)
    parser.set_defaults(**{name: getattr(SegmentOptions(), name) for name in skip})


def segment_options(args: argparse.Namespace) -> SegmentOptions:
    return _build(SegmentOptions, args)


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision", default=TrainOptions().precision, choices=PRECISIONS, help=TRAIN_HELP["precision"]
    )


def add_diffusion_options(parser: argparse.ArgumentParser) -> None:
    """Settings of a new LDSeg model's diffusion (stored in its model file)."""
    d = DiffusionConfig()
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default="default",
        help="default (docs/experiments.md), or the paper's own design (eps-prediction, decoder on z_t - eps_hat, "
        "no refiner), or its Table V ablations: paper-ld / paper-id / paper-ld-id replace the label / image / both "
        "encoders by plain down-sampling; the flags below override single settings",
    )
    parser.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="noise schedule")
    parser.add_argument(
        "--prediction", choices=PREDICTIONS, default=None, help=f"what the denoiser predicts (default {d.prediction})"
    )
    parser.add_argument(
        "--decoder-input",
        choices=DECODER_INPUTS,
        default=None,
        help=f"what the decoder sees in training: z_t - eps_hat (paper) or the x0 estimate (default {d.decoder_input})",
    )
    parser.add_argument(
        "--terminal-fraction",
        type=float,
        default=None,
        help="fraction of each training batch at t = T, the level sampling starts from "
        f"(0: uniform levels, the paper's; default {d.terminal_fraction:g})",
    )
    parser.add_argument(
        "--refine-width",
        type=int,
        default=None,
        help="boundary refiner's width: image detail where the decoded latent is unsure; 0: none, the paper's "
        f"(default {DEFAULT_REFINE_WIDTH[2]} for 2D images, {DEFAULT_REFINE_WIDTH[3]} for 3D)",
    )


def recipe_settings(args: argparse.Namespace, dims: int | None = None) -> dict[str, Any]:
    """The diffusion and refiner settings of a new model: its recipe, with any
    of --prediction/--decoder-input/--terminal-fraction/--refine-width given on top.
    ``dims`` (the data's): the refiner's default width for such images."""
    d, net = DiffusionConfig(), NetworkConfig()
    settings = {name: getattr(d, name) for name in RECIPE_DIFFUSION_FIELDS}
    settings.update({name: getattr(net, name) for name in RECIPE_NETWORK_FIELDS})
    if dims is not None:
        settings["refine_width"] = DEFAULT_REFINE_WIDTH[dims]
    settings.update(RECIPES[args.recipe])
    for name in ("prediction", "decoder_input", "terminal_fraction", "refine_width"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if settings["refine_width"] < 0:
        raise InputError(f"--refine-width must be 0 or more, not {settings['refine_width']}")
    if not 0 <= settings["terminal_fraction"] <= 1:
        raise InputError(f"--terminal-fraction must be between 0 and 1, not {settings['terminal_fraction']}")
    return settings
