"""``ldseg evaluate``: per-case Dice, IoU and HD95 of a model on a data set."""

from __future__ import annotations

from pathlib import Path

from ..data.dataset import find_pairs
from ..data.preprocess import labels_to_classes
from ..errors import InputError
from ..evaluation.cases import evaluate_case, format_summary, summarize, write_json, write_table_csv
from ..inference.segmenter import Segmenter
from ..io.images import read_label
from ..progress import Progress
from .options import segment_options


def run_evaluation(args, progress: Progress) -> int:
    request = segment_options(args)
    segmenter = Segmenter(
        args.model, device=args.device, precision=args.precision, memory_budget=request.memory_budget * 1e9
    )
    config = segmenter.config
    pairs = find_pairs(Path(args.dataset))
    if args.cases:
        wanted = set(args.cases)
        pairs = [p for p in pairs if p.name in wanted]
        if not pairs:
            raise InputError(f"none of the cases {sorted(wanted)} is in {args.dataset}")
    output = Path(args.output) if args.output else Path(f"evaluation-{segmenter.model_path.stem}")
    rows, result = [], None
    for i, pair in enumerate(pairs):
        progress("evaluate", i / len(pairs), f"{pair.name} ({i + 1}/{len(pairs)})")
        result = segmenter.segment(pair.image, request=request)
        labels, geometry = read_label(pair.label)
        ref = labels_to_classes(labels, config.preprocessing, pair.label.name)
        row = evaluate_case(pair.name, result.classes, ref, geometry.spacing, list(config.class_names))
        row["seconds"] = result.seconds["total"]
        rows.append(row)
    summary = summarize(rows)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from ..errors import OutputError

        raise OutputError(f"{output}: cannot create the output folder ({e.strerror})") from None
    write_table_csv(rows, output / "cases.csv")
    write_json(
        {
            "model": str(segmenter.model_path),
            "dataset": str(args.dataset),
            "cases": len(rows),
            "architecture": config.architecture,
            "samples": result.samples if result else request.samples,  # what ran (a deterministic model: 1)
            "sampler": result.sampler if result else request.sampler,
            "steps": result.steps if result else request.steps,
            "summary": summary,
        },
        output / "summary.json",
    )
    progress("done", 1.0, f"evaluated {len(rows)} cases; wrote {output}/cases.csv and summary.json")
    print(format_summary(summary))
    return 0
