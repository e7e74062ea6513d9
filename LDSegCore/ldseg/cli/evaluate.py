"""``ldseg evaluate``: per-case Dice, IoU and HD95 of a model on a data set,
and on a data set with several raters the measures of the model's
distribution of segmentations against theirs (GED, HM-IoU, calibration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.dataset import describe_pairing, find_pairs
from ..data.preprocess import labels_to_classes
from ..data.raters import rater_consensus
from ..errors import InputError, OutputError
from ..evaluation.cases import evaluate_case, format_summary, summarize, write_json, write_table_csv
from ..evaluation.multirater import RaterEvaluation
from ..evaluation.sampled import sample_segmentations
from ..inference.segmenter import Segmenter
from ..io.images import read_image, read_label
from ..progress import Progress
from .options import segment_options

RELIABILITY_DIAGRAM = "reliability.png"


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
    progress.info(describe_pairing(pairs))
    multi_rater = len(pairs[0].labels) > 1
    output = Path(args.output) if args.output else Path(f"evaluation-{segmenter.model_path.stem}")
    raters, result = None, None
    rows = []
    for i, pair in enumerate(pairs):
        progress("evaluate", i / len(pairs), f"{pair.name} ({i + 1}/{len(pairs)})")
        maps, geometry = [], None
        for path in pair.labels:
            labels, geometry = read_label(path)
            maps.append(labels_to_classes(labels, config.preprocessing, path.name))
        if not multi_rater:
            result = segmenter.segment(pair.image, request=request)
            row = evaluate_case(pair.name, result.classes, maps[0], geometry.spacing, list(config.class_names))
            row["seconds"] = result.seconds["total"]
            rows.append(row)
            continue
        stack = _rater_stack(maps, pair)
        sampled = sample_segmentations(segmenter, read_image(pair.image), request)
        if raters is None:
            raters = RaterEvaluation(sampled.uncertainty_kind)
        # the single-map measures against the raters' consensus
        consensus = rater_consensus(stack, config.num_classes)
        row = evaluate_case(pair.name, sampled.classes, consensus, geometry.spacing, list(config.class_names))
        row.update(raters.add_case(sampled.samples, stack, sampled.probabilities, sampled.uncertainty))
        rows.append(row)
    summary = summarize(rows)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{output}: cannot create the output folder ({e.strerror})") from None
    write_table_csv(rows, output / "cases.csv")
    # what actually ran: a deterministic baseline takes one pass, no sampling steps
    sampling = segmenter.architecture.sampling(request.samples, request.sampler, request.steps, request.flip_samples)
    report = {
        "model": str(segmenter.model_path),
        "dataset": str(args.dataset),
        "cases": len(rows),
        "architecture": config.architecture,
        "samples": sampling.samples,
        "sampler": sampling.sampler,
        "steps": sampling.steps_run,
        "flip_views": sampling.views_used,
        "summary": summary,
    }
    written = ["cases.csv", "summary.json"]
    if raters is not None:
        report["raters"] = {
            "count": len(pairs[0].labels),
            "folders": [p.parent.name for p in pairs[0].labels],
            # a deterministic model's one output stands in N times (GED, HM-IoU)
            "compared_samples": request.samples,
            "reference_for_dice": "consensus: foreground where at least half of the raters mark it",
            **raters.summary(),
        }
        raters.save_reliability_diagram(
            output / RELIABILITY_DIAGRAM, f"{segmenter.model_path.stem}: ECE {raters.summary()['ece']:.4f}"
        )
        written.append(RELIABILITY_DIAGRAM)
    write_json(report, output / "summary.json")
    progress("done", 1.0, f"evaluated {len(rows)} cases; wrote {', '.join(f'{output}/{w}' for w in written)}")
    print(format_summary(summary))
    return 0


def _rater_stack(maps, pair) -> np.ndarray:
    """The raters' class maps of one case as one (M, *spatial) array."""
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:
        sizes = ", ".join(f"{p.parent.name}/{p.name} {'x'.join(map(str, m.shape))}" for p, m in zip(pair.labels, maps))
        raise InputError(f"{pair.name}: the raters' labels differ in size ({sizes})")
    return np.stack(maps)
