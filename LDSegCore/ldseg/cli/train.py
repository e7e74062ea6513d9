"""``ldseg train``: build or load the config, load the data, train, write the model."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from ..config import RECIPE_DIFFUSION_FIELDS, RECIPE_NETWORK_FIELDS, DiffusionConfig, ModelConfig
from ..data.dataset import SegmentationDataset, describe_pairing, find_pairs, split_cases
from ..device import resolve_device
from ..errors import InputError, OutputError
from ..io.atomic import write_bytes_atomic
from ..io.modelfile import load_model_file
from ..io.models import resolve_model
from ..progress import Progress
from ..training.presets import config_for_dataset, model_name_from
from ..training.rundir import lock_run_dir, record_or_check, resume_or_refuse
from ..training.trainer import BEST_MODEL, CHECKPOINT, LAST_MODEL, Trainer
from .options import recipe_settings, train_options


def _init_distributed(device: torch.device) -> None:
    """Join the process group when started by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def _config(args, pairs) -> tuple[ModelConfig, dict | None]:
    name = args.name or model_name_from(Path(args.output))
    architecture = args.architecture
    if not args.init:
        recipe = recipe_settings(args)
        diffusion = DiffusionConfig(schedule=args.schedule, **{name: recipe[name] for name in RECIPE_DIFFUSION_FIELDS})
        config = config_for_dataset(
            pairs,
            size=args.size,
            grid=args.grid,
            class_names=args.class_names,
            label_values=args.label_values,
            intensity=args.intensity,
            name=name,
            modality=args.modality,
            diffusion=diffusion,
            architecture=architecture or "ldseg",
            downsamplings=args.downsamplings,
        )
        if config.architecture == "ldseg":
            recipe = recipe_settings(args, config.dims)  # the refiner's default width depends on the dims
            for key in RECIPE_NETWORK_FIELDS:
                setattr(config.network, key, recipe[key])
        else:
            config.network.refine_width = 0
        for key in ("latent_channels", "image_latent_channels", "image_attention_heads", "image_attention_levels"):
            value = getattr(args, key, None)
            if value is not None:
                if value < 1:
                    raise InputError(f"--{key.replace('_', '-')} must be at least 1, not {value}")
                setattr(config.network, key, value)
        if getattr(args, "image_attention", None) is not None:
            config.network.image_attention = args.image_attention
        stages = len(config.network.encoder_widths)
        if config.network.image_attention_levels > stages:
            raise InputError(f"--image-attention-levels must be at most {stages} (the encoder's stages) for this size")
        config.validate()
        config.title, config.description = args.title or name, args.description
        return config, None
    init_path = resolve_model(args.init)
    base, state = load_model_file(init_path)
    if architecture and architecture != base.architecture:
        raise InputError(
            f"{init_path.name} is a {base.architecture} model; it cannot start "
            f"a {architecture} model (leave out --architecture or --init)"
        )
    same_classes = (not args.class_names or tuple(args.class_names) == base.class_names) and (
        not args.label_values or tuple(args.label_values) == base.preprocessing.label_values
    )
    if same_classes:
        config = base
    else:  # a new task: other classes, the init model's networks where they fit
        config = config_for_dataset(  # the grid must fit the init network's down-samplings
            pairs,
            size="paper",
            downsamplings=base.network.downsamplings,
            grid=args.grid or base.preprocessing.grid,
            class_names=args.class_names,
            label_values=args.label_values,
            intensity=base.preprocessing.intensity,
            name=name,
            modality=args.modality or base.modality,
            diffusion=base.diffusion,
            architecture=base.architecture,
        )
        config.network = base.network
        config.validate()
    config.name = name
    config.title = args.title or f"{base.title or base.name} (fine-tuned)"
    config.description = args.description or base.description
    config.training = {"fine_tuned_from": init_path.name, "base_training": base.training}
    return config, state


def run_training(args, progress: Progress) -> int:
    options = train_options(args)  # every training setting checked here, once
    if not 0 <= args.val_fraction < 1:
        raise InputError(f"--val-fraction must be at least 0 and below 1, not {args.val_fraction}")
    if args.cases is not None and args.cases < 1:
        raise InputError(f"--cases must be at least 1, not {args.cases}")
    output = Path(args.output)
    if output.suffix != ".safetensors":
        raise OutputError(f"{output}: model files end in .safetensors")
    if output.exists() and not args.overwrite and not args.resume:
        raise OutputError(f"{output}: exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise OutputError(f"{output}: the folder {output.parent} does not exist")
    device = resolve_device(args.device)
    _init_distributed(device)
    rank = dist.get_rank() if dist.is_initialized() else 0

    pairs = find_pairs(Path(args.dataset))
    progress.info(describe_pairing(pairs))
    if args.cases:
        pairs = pairs[: args.cases]
    train_pairs, val_pairs = (
        split_cases(pairs, args.val_fraction, args.group_by) if args.val_fraction > 0 else (pairs, [])
    )
    try:
        config, init_state = _config(args, pairs)
    except ValueError as e:  # e.g. a --grid of the wrong length, repeated --label-values
        raise InputError(str(e)) from None

    run_dir = Path(args.run_dir) if args.run_dir else output.with_suffix(".run")
    if (run_dir / CHECKPOINT).exists() and not args.resume:
        raise OutputError(f"{run_dir}: holds an earlier run; pass --resume to continue it or choose another --run-dir")

    def load(f, m):
        return progress("load", 0.05 * f, m) if rank == 0 else None

    train_set = SegmentationDataset(train_pairs, config.preprocessing, progress=load)
    val_set = SegmentationDataset(val_pairs, config.preprocessing) if val_pairs else None
    config.training = {
        **config.training,
        "dataset": str(Path(args.dataset).resolve().name),
        "train_names": [p.name for p in train_pairs],
        "val_names": [p.name for p in val_pairs],
    }
    try:  # only now: bad data must leave nothing behind
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    if rank == 0:  # one training per run folder; a resumed run must be the run it continues
        lock_run_dir(run_dir)
        resuming = args.resume and (run_dir / CHECKPOINT).exists()
        record_or_check(run_dir, args, pairs, resuming=resuming, warn=progress.info)
    trainer = Trainer(
        config,
        train_set,
        val_set,
        options,
        run_dir,
        device,
        init_state=init_state,
        progress=progress if rank == 0 else (lambda *a, **k: None),
    )
    if args.resume and resume_or_refuse(trainer) and rank == 0:
        progress.info(f"resuming {run_dir} after epoch {trainer.epoch}")
    trainer.fit()
    if rank == 0:
        source = run_dir / (BEST_MODEL if (run_dir / BEST_MODEL).exists() else LAST_MODEL)
        write_bytes_atomic(output, source.read_bytes())
        progress(
            "done",
            1.0,
            f"wrote {output} (best epoch {trainer.best_epoch}, validation Dice {trainer.best_dice:.3f})"
            if trainer.best_dice >= 0
            else f"wrote {output}",
            model=str(output),
        )
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0
