"""The ``ldseg`` command line: segment, train, evaluate, info, models.

Errors a user can fix are printed as one line (``ldseg: error: ...``, or a
JSON ``error`` event with ``--progress json``) with exit code 2; a cancelled
run (Ctrl-C, SIGTERM) exits with 130 and leaves no partial output.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from .. import __version__
from ..config import ARCHITECTURES, INTENSITY_METHODS, OUTPUT_FORMATS
from ..errors import CancelledError, LDSegError, OutputError
from ..progress import MODES, Progress
from .options import (
    add_diffusion_options,
    add_precision_option,
    add_segment_options,
    add_train_options,
    segment_options,
)

EXIT_USER, EXIT_INTERNAL, EXIT_CANCELLED = 2, 1, 130


# -- commands --------------------------------------------------------------------


def check_output_folder(folder: Path) -> None:
    """Fail before any work if ``folder`` cannot be created or written."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{folder}: cannot write the output folder ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: cannot write the output folder (no permission in {probe})")


def cmd_segment(args, progress: Progress) -> int:
    from ..data.preprocess import check_image
    from ..inference.restore import DEFAULT_RESTORE_BUDGET
    from ..inference.segmenter import Segmenter
    from ..io.export import check_result_set, clean_stale_staging, default_format, plan_result_set, write_result
    from ..io.images import read_image, split_extension

    request = segment_options(args)  # every sampling setting checked here, once
    image_path = Path(args.image)
    output = Path(args.output)
    fmt = args.format or default_format(image_path)
    # everything that can refuse the output does so before any work
    check_output_folder(output)
    for note in clean_stale_staging(output):
        progress.info(note)
    result_set = plan_result_set(
        output, split_extension(image_path)[0], fmt, probabilities=args.probabilities, samples=request.save_samples
    )
    check_result_set(result_set, overwrite=args.overwrite, protected=[image_path])
    image = read_image(image_path)  # bad input fails before anything is written
    budget = request.memory_budget * 1e9
    segmenter = Segmenter(
        args.model,
        device=args.device,
        precision=args.precision,
        memory_budget=budget,
        restore_budget=min(budget, DEFAULT_RESTORE_BUDGET),
        compile=args.compile,
        on_warning=progress.info,
    )
    check_image(image, segmenter.config.preprocessing)
    # a request this model cannot run (steps beyond its T, flips it never learned) is refused before any work
    segmenter.architecture.sampling(request.samples, request.sampler, request.steps, request.flip_samples)
    progress.info(
        f"model {segmenter.model_path.name} on {segmenter.device_description}"
        + ("" if segmenter.device.type == "cuda" else " (no GPU in use: CPU run)")
    )
    result = segmenter.segment(image, request=request, progress=progress)
    progress("write", 0.95, f"writing results to {args.output}")
    files = write_result(
        result,
        image,
        output,
        segmenter.config,
        stem=split_extension(image_path)[0],
        fmt=fmt,
        probabilities=args.probabilities,
        samples=request.save_samples,
        overwrite=args.overwrite,
        model_path=segmenter.model_path,
        seed=request.seed,
    )
    progress("done", 1.0, f"wrote {len(files)} files to {args.output}", result=str(files["result"]))
    if args.progress != "json":
        for path in files.values():
            print(path)
    return 0


def cmd_info(args, progress: Progress) -> int:
    from ..architectures import architecture_of
    from ..io.modelheader import read_config
    from ..io.models import resolve_model
    from ..nn.ldseg_net import count_parameters

    path = resolve_model(args.model)
    config = read_config(path)
    architecture = architecture_of(config)
    info = {
        **config.summary(),
        "path": str(path),
        "parameters": count_parameters(architecture.build()),
        "preprocessing": config.preprocessing.to_dict(),
        "network": config.to_dict()["network"],
        "diffusion": config.to_dict()["diffusion"],
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['title']}  ({path})")
    if info["description"]:
        print(f"  {info['description']}")
    print(f"  architecture: {architecture.title}")
    print(f"  {info['dims']}D, {info['channels']} channel(s), modality: {info['modality'] or 'unspecified'}")
    axes = {"RAS": ", axes turned to R-A-S order"}.get(config.preprocessing.orientation, "")
    print(f"  grid {' x '.join(map(str, info['grid']))}{axes}, {info['parameters']:,} parameters")
    print("  classes: " + ", ".join(f"{c['name']} (label {c['label_value']})" for c in info["classes"]))
    if architecture.stochastic:
        print(
            f"  sampling: {info['sampler']} K={info['sampling_steps']}, schedule {info['diffusion']['schedule']} "
            f"T={info['diffusion']['steps']}"
        )
    else:
        print("  sampling: none (one forward pass; no uncertainty map)")
    if info["training"]:
        t = info["training"]
        print(
            f"  trained: {t.get('epochs')} epochs, best validation Dice {t.get('best_val_dice')} "
            f"(epoch {t.get('best_epoch')}), {t.get('train_cases')} training cases"
        )
    return 0


def cmd_models(args, progress: Progress) -> int:
    from ..io.models import list_models, user_model_dir

    models = list_models()
    if args.json:
        print(json.dumps(models, indent=2))
        return 0
    if not models:
        print(f"no models found (user model folder: {user_model_dir()})")
    for m in models:
        state = m.get("error") or f"{m['dims']}D, classes: {', '.join(c['name'] for c in m['classes'])}"
        print(f"{m['name']:<24} [{m['source']}] {state}\n  {m['path']}")
    return 0


def cmd_train(args, progress: Progress) -> int:
    from .train import run_training

    return run_training(args, progress)


def cmd_evaluate(args, progress: Progress) -> int:
    from .evaluate import run_evaluation

    return run_evaluation(args, progress)


# -- parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ldseg", description="LDSeg: latent diffusion segmentation with per-voxel uncertainty."
    )
    p.add_argument("--version", action="version", version=f"ldseg {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp, device=True):
        sp.add_argument(
            "--progress",
            choices=MODES,
            default="bar",
            help="progress on stderr: a bar, JSON lines (for programs), or none",
        )
        if device:
            sp.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
            add_precision_option(sp)

    s = sub.add_parser(
        "segment", help="segment an image; writes labels, SD map, probabilities, preview (and, asked, the samples)"
    )
    s.add_argument("image", help="image file (PNG/TIFF/JPEG, NIfTI, NRRD, MHA) or DICOM series folder")
    s.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    s.add_argument("--model", help="model name or file (default: the shipped hippocampus model)")
    add_segment_options(s)
    s.add_argument(
        "--overwrite", action="store_true", help="replace result files of the same names in the output folder"
    )
    s.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help="output format (default: NIfTI for NIfTI input, else NRRD)",
    )
    s.add_argument(
        "--probabilities",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the mean class probabilities (default: yes)",
    )
    s.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the denoiser (slow start; pays on GPUs with many steps; falls back "
        "to uncompiled with a warning if compiling fails)",
    )
    common(s)
    s.set_defaults(func=cmd_segment)

    t = sub.add_parser("train", help="train a model on a folder with images/ and labels/")
    t.add_argument("dataset", help="folder with images/NAME.ext and labels/NAME.ext")
    t.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    t.add_argument("--init", help="start from this model (fine-tuning)")
    t.add_argument("--size", default="small", help="network size for a new model: tiny, small, paper")
    t.add_argument(
        "--downsamplings",
        type=int,
        help="2x down-samplings in the encoders, i.e. latent = grid / 2^N "
        "(default: the size's; fewer keep small structures' detail)",
    )
    t.add_argument("--latent-channels", type=int, help="label latent channels of a new model (default: the size's)")
    t.add_argument(
        "--image-latent-channels", type=int, help="image latent channels of a new model (default: the size's)"
    )
    t.add_argument(
        "--image-attention-heads",
        type=int,
        help="heads of the image encoder's self-attention in a new model (default: the size's; 8 for small)",
    )
    t.add_argument(
        "--image-attention-levels",
        type=int,
        help="how many of the image encoder's coarsest stages have self-attention in a new model "
        "(default 1; 2 with --recipe paper*, as in the reference code)",
    )
    t.add_argument(
        "--image-attention",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="self-attention in the image encoder's last two stages of a new model (default: on for 2D, "
        "off for 3D, as in the reference code)",
    )
    t.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default=None,
        help="ldseg (default), or the deterministic Res-UNet baseline of the same sizes "
        "(with --init: the init model's)",
    )
    t.add_argument("--grid", type=int, nargs="+", help="model grid (numpy order, e.g. z y x)")
    t.add_argument("--class-names", nargs="+", help="class names, background first")
    t.add_argument("--label-values", type=int, nargs="+", help="label value of each class, 0 first")
    t.add_argument("--intensity", default="minmax", choices=INTENSITY_METHODS, help="intensity normalization")
    t.add_argument("--name", help="model name (default: the output file name)")
    t.add_argument("--title", default="")
    t.add_argument("--modality", default="")
    t.add_argument("--description", default="")
    add_train_options(t)
    add_diffusion_options(t)
    t.add_argument("--val-fraction", type=float, default=0.2, help="fraction of cases kept for validation")
    t.add_argument("--cases", type=int, default=None, help="use only the first N cases (sorted)")
    t.add_argument("--group-by", metavar="REGEX", help="split whole groups: the part of a case name REGEX matches")
    t.add_argument("--run-dir", help="checkpoints and logs (default: OUTPUT without suffix + '.run')")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    t.add_argument("--overwrite", action="store_true", help="replace an existing output model file")
    common(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="Dice, IoU and HD95 of a model on a labeled data set")
    e.add_argument("model")
    e.add_argument("dataset")
    e.add_argument("-o", "--output", default=None, help="folder for cases.csv and summary.json")
    add_segment_options(e, result_set=False)
    e.add_argument("--cases", nargs="+", help="only these case names")
    common(e)
    e.set_defaults(func=cmd_evaluate)

    i = sub.add_parser("info", help="describe a model file")
    i.add_argument("model", nargs="?", default=None)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info, progress="none")

    m = sub.add_parser("models", help="list the shipped and the user's models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models, progress="none")
    return p


def _raise_cancel(signum, frame):
    raise CancelledError("cancelled")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress(args.progress)
    signal.signal(signal.SIGTERM, _raise_cancel)
    try:
        return args.func(args, progress)
    except (CancelledError, KeyboardInterrupt):
        progress.error("cancelled")
        return EXIT_CANCELLED
    except LDSegError as e:
        progress.error(str(e))
        return EXIT_USER
    except MemoryError:
        progress.error("out of memory; use fewer samples, a smaller model or another device")
        return EXIT_USER
    except Exception as e:  # noqa: BLE001 - an internal error: its traceback, then one final error event
        if _is_allocation_failure(e):
            progress.error("out of memory on the device; use fewer samples, --device cpu, or a smaller input")
            return EXIT_USER
        traceback.print_exc()
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        progress.error(f"internal error ({type(e).__name__}: {first_line}); please report it with the traceback above")
        return EXIT_INTERNAL


def _is_allocation_failure(error: Exception) -> bool:
    """torch's "CUDA out of memory", its CPU allocator's "can't allocate
    memory", and the OS's ENOMEM."""
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


if __name__ == "__main__":
    sys.exit(main())
