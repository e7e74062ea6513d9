"""End-to-end training (paper, Algorithm 1) of any architecture.

The architecture (:mod:`ldseg.architectures`) owns the loss of a batch and
the prediction used for validation; the trainer owns everything around them:
data order, augmentation, Adam with an exponentially decaying learning rate,
the EMA of the part the architecture names (LDSeg: its denoiser; the EMA
weights are what a model file carries), checkpoints, exact resume,
validation, the log, the wall-clock budget and DDP. So the deterministic
Res-UNet baseline is trained exactly as LDSeg is, with CE + gamma * Dice and
no EMA (LDSeg's encoders and decoder are used raw, and so are the baseline's).

A wall-clock budget (``time_budget`` minutes) ends training after the epoch
that reaches it, and without an epoch count it alone does; the model file is
the best validation epoch, as always.

Exact resume: every epoch's random streams (order, augmentation, timesteps,
noise, dropout) are seeded from (seed, epoch, rank), and a checkpoint holds
everything else at an epoch boundary; so an interrupted run resumed from its
checkpoint ends with the same weights as an uninterrupted one.

Distributed: started under ``torchrun`` (WORLD_SIZE > 1) each process trains
on its shard of every epoch with DistributedDataParallel (gloo on CPU, nccl
on CUDA); only rank 0 validates and writes files.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from ..architectures import architecture_of
from ..config import (
    DEFAULT_FLIP_SAMPLES,
    DEFAULT_MEMORY_BUDGET_GB,
    INTENSITY_JITTER,
    ModelConfig,
    TrainOptions,
    resolve_flip_axes,
)
from ..data.augment import random_flip, random_intensity
from ..data.laterality import laterality
from ..data.orientation import left_right_axis
from ..device import describe, training_policy
from ..errors import InputError, LDSegError
from ..evaluation.metrics import dice_per_class
from ..inference.flips import NO_FLIPS, flip_views
from ..io.atomic import write_bytes_atomic
from ..io.modelfile import save_model
from ..progress import null_progress

CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "best.safetensors"
LAST_MODEL = "last.safetensors"
LOG = "log.jsonl"
MAX_SKIPPED_STEPS = 20
CURVES = "curves.png"


def _seed_for(seed: int, epoch: int, rank: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729 + stream * 15_485_863) % (2**63)


class EMA:
    """Exponential moving average of a module's parameters, with the usual
    warm-up (decay ramps up from 0.1) so short runs are not dominated by
    the random initialization."""

    def __init__(self, module: nn.Module, decay: float):
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.module.buffers(), module.buffers()):
            e.copy_(b)


class Trainer:
    def __init__(
        self,
        config: ModelConfig,
        train_set,
        val_set,
        options: TrainOptions,
        run_dir: Path,
        device: torch.device,
        *,
        init_state: dict[str, torch.Tensor] | None = None,
        progress: Callable[..., None] = null_progress,
    ):
        config.validate()
        try:
            options.validate()
        except ValueError as e:
            raise InputError(str(e)) from None
        if len(train_set) == 0:
            raise InputError("no training cases")
        self.config, self.options = config, options
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.device = device
        self.progress = progress
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.policy = training_policy(device, options.precision)
        self.bf16 = self.policy.bf16
        self.architecture = architecture_of(config)
        self.flip_axes = resolve_flip_axes(options.flip_axes, config.preprocessing.dims)
        self.laterality = laterality(config.class_names)
        self._left_right = self._left_right_axes()
        self._flip_allowed = self._allowed_flips()
        swaps = self.laterality.pairs and self.laterality.flips_left_right
        self._side_swap = torch.tensor(self.laterality.swap) if swaps else None

        torch.manual_seed(options.seed)  # same initial weights on every rank
        self.model = self.architecture.build().to(device)
        if init_state is not None:
            load_matching(self.model, init_state)
        ema_part = self.architecture.ema_part(self.model)
        self.ema = EMA(ema_part, options.ema_decay) if ema_part is not None else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=options.lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, options.lr_decay)
        self.net = nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.epoch = 0
        self.skipped = 0
        self.best_dice = -1.0
        self.best_epoch = 0
        self.log: list[dict[str, Any]] = []

    # -- checkpoints -----------------------------------------------------------
    def _checkpoint_state(self) -> dict[str, Any]:
        state = {
            "config": json.dumps(self.config.to_dict()),
            "options": json.dumps(asdict(self.options)),
            "epoch": self.epoch,
            "best_dice": self.best_dice,
            "best_epoch": self.best_epoch,
            "log": json.dumps(self.log),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }
        if self.ema is not None:
            state["ema_updates"] = self.ema.updates
            state["ema"] = self.ema.module.state_dict()
        return state

    def resume(self) -> bool:
        """Continue from run_dir's checkpoint if there is one; True if resumed."""
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise LDSegError(f"{path}: cannot resume from this checkpoint ({type(e).__name__})") from None
        if _normalized_config(state["config"]) != json.loads(json.dumps(self.config.to_dict())):
            raise LDSegError(
                f"{path}: the checkpoint belongs to a different model configuration; use another run folder"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
            self.ema.updates = int(state["ema_updates"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.best_dice, self.best_epoch = float(state["best_dice"]), int(state["best_epoch"])
        self.log = json.loads(state["log"])
        return True

    def _save_checkpoint(self) -> None:
        buffer = io.BytesIO()
        torch.save(self._checkpoint_state(), buffer)
        write_bytes_atomic(self.run_dir / CHECKPOINT, buffer.getvalue())

    def inference_state(self) -> dict[str, torch.Tensor]:
        """Weights for a model file: the EMA denoiser in place of the raw one
        (the Res-UNet baseline: its weights as trained)."""
        model = self.architecture.with_ema(self.model, self.ema.module if self.ema is not None else None)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    def save_model(self, path: Path) -> None:
        config = copy.deepcopy(self.config)
        config.training = {
            **config.training,
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "best_val_dice": round(self.best_dice, 4) if self.best_dice >= 0 else None,
            "train_cases": len(self.train_set),
            "world_size": self.world,
            "val_cases": len(self.val_set) if self.val_set is not None else 0,
            "options": asdict(self.options),
            "flip_axes": self.flip_axes,  # what "auto" meant for this model
            **self._side_record(),
        }
        config.diffusion.flip_samples = self._samples_over_flips(config)
        save_model(path, config, self.inference_state())

    def _samples_over_flips(self, config: ModelConfig) -> bool:
        """Whether the model file spreads its samples over its flips (DEFAULT_FLIP_SAMPLES):
        only where its training's flips are known (``config.training``, just recorded) and
        change no class's meaning, so each view was learned."""
        return self.architecture.stochastic and DEFAULT_FLIP_SAMPLES[config.dims] and flip_views(config) != NO_FLIPS

    def _side_record(self) -> dict[str, Any]:
        """What the flips did to classes named by a side (nothing when none is)."""
        names, lat = self.config.class_names, self.laterality
        if not lat.pairs and not lat.unpaired:
            return {}
        return {
            "flip_side_swaps": [[names[a], names[b]] for a, b in lat.pairs] if lat.flips_left_right else [],
            "no_left_right_flips_for": list(lat.unpaired),
        }

    def _describe_sides(self) -> str | None:
        names, lat = self.config.class_names, self.laterality
        if not self.options.augment:
            return None
        if lat.unpaired:
            off = "no flips at all" if self.flip_axes == "left-right" else "no left-right flips"
            return f"{off}: a side without a partner class in {', '.join(lat.unpaired)}"
        if lat.pairs:
            return "left-right flips swap " + ", ".join(f"{names[a]} <-> {names[b]}" for a, b in lat.pairs)
        return None

    # -- training --------------------------------------------------------------
    def _epoch_batches(self) -> list[list[int]]:
        g = torch.Generator().manual_seed(_seed_for(self.options.seed, self.epoch, 0, 0))
        order = torch.randperm(len(self.train_set), generator=g).tolist()
        shard_len = math.ceil(len(order) / self.world)
        padded = (order * (1 + shard_len * self.world // max(1, len(order))))[: shard_len * self.world]
        shard = padded[self.rank :: self.world]
        bs = self.options.batch_size
        return [shard[i : i + bs] for i in range(0, len(shard), bs)]

    def _train_epoch(self) -> dict[str, float]:
        opts = self.options
        seeds = [_seed_for(opts.seed, self.epoch, self.rank, s) for s in (1, 2, 3)]
        aug_gen = torch.Generator().manual_seed(seeds[0])
        noise_gen = torch.Generator().manual_seed(seeds[1])
        torch.manual_seed(seeds[2])  # dropout
        self.model.train()
        sums: dict[str, float] = {}
        batches = self._epoch_batches()
        done = 0
        for step, idx in enumerate(batches):
            items = [self._training_item(i, aug_gen) for i in idx]
            images = torch.stack([it[0] for it in items])
            labels = torch.stack([it[1] for it in items])
            if opts.augment:
                allowed = self._flip_allowed[idx] if self._flip_allowed is not None else None
                mirror = (self._left_right[idx], self._side_swap) if self._side_swap is not None else None
                images, labels = random_flip(images, labels, aug_gen, allowed=allowed, mirror=mirror)
                if opts.intensity_augment:
                    images = random_intensity(images, aug_gen, INTENSITY_JITTER)
            step_result = self.architecture.training_step(
                self.net, images.to(self.device), labels.to(self.device), noise_gen, opts, self.policy
            )
            loss, terms = step_result.loss, step_result.terms
            if not torch.isfinite(loss):
                raise LDSegError(
                    f"training diverged at epoch {self.epoch + 1} (loss is {loss.item()}); lower the learning rate"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not self._gradients_finite():
                # skip the update, as a grad scaler would; only a run of them is fatal
                self.skipped += 1
                if self.skipped >= MAX_SKIPPED_STEPS:
                    raise LDSegError(
                        f"training diverged at epoch {self.epoch + 1} (non-finite gradients "
                        f"in {self.skipped} steps in a row); lower the learning rate or "
                        "use --precision fp32"
                    )
                continue
            self.skipped = 0
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.architecture.ema_part(self.model))
            terms["loss"] = loss
            done += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            self.progress(
                "train",
                self.fraction_done(self.epoch + (step + 1) / len(batches)),
                f"{self._epoch_text(self.epoch + 1)} loss {float(loss.detach()):.4f}",
            )
        self.scheduler.step()
        return {k: v / max(1, done) for k, v in sums.items()}

    def _left_right_axes(self) -> torch.Tensor:
        """(cases,) each training case's left-right array axis. In the "RAS"
        axis order it is the last one; in a file's own order it comes from the
        case's direction (plain sequences, as the benchmarks pass: the identity
        direction)."""
        pre = self.config.preprocessing
        dims = pre.dims
        geometries = getattr(self.train_set, "geometries", None)
        identity = [float(r == c) for r in range(dims) for c in range(dims)]
        directions = [g.direction for g in geometries] if geometries else [identity] * len(self.train_set)
        return torch.tensor(
            [dims - 1 if pre.orientation == "RAS" else left_right_axis(d, dims) for d in directions], dtype=torch.long
        )

    def _allowed_flips(self) -> torch.Tensor | None:
        """(cases, spatial) bool: the axes each case may be flipped along (None:
        all). "left-right" keeps to the case's left-right axis; classes named by
        a side without a partner rule that axis out (a flip would mislabel them)."""
        sides_ok = self.laterality.flips_left_right
        if self.flip_axes == "all" and sides_ok:
            return None
        left_right = torch.nn.functional.one_hot(self._left_right, self.config.preprocessing.dims).bool()
        if self.flip_axes == "all":
            return ~left_right
        return left_right if sides_ok else torch.zeros_like(left_right)

    def _training_item(self, index: int, generator: torch.Generator):
        """A multi-rater data set draws one rater's mask per case and step (from
        the epoch's seeded stream, so resume stays exact); plain sequences
        (the benchmarks pass lists) are indexed."""
        draw = getattr(self.train_set, "training_item", None)
        return draw(index, generator) if draw is not None else self.train_set[index]

    def _gradients_finite(self) -> bool:
        norms = [p.grad.detach().abs().amax() for p in self.model.parameters() if p.grad is not None]
        return bool(torch.isfinite(torch.stack(norms)).all()) if norms else True

    @torch.inference_mode()
    def validate(self, dataset=None) -> float:
        """Mean foreground Dice on the model grid, predicted as at inference
        (LDSeg: the EMA denoiser, the validation N and K, a fixed seed)."""
        dataset = dataset if dataset is not None else self.val_set
        if dataset is None or len(dataset) == 0:
            return float("nan")
        view = self.architecture.with_ema(self.model, self.ema.module if self.ema is not None else None)
        view.eval()
        predictor = self.architecture.predictor(view)
        # without flips, as every model before flip-spread sampling was selected (and one view: cheaper)
        sampling = self.architecture.sampling(self.options.val_samples, None, self.options.val_steps, "off")
        scores = []
        for i in range(len(dataset)):
            image, labels = dataset[i]
            prediction = predictor.predict(
                image[None].to(self.device),
                sampling,
                bf16=self.bf16,
                eta=0.0,
                seed=0,
                memory_budget=DEFAULT_MEMORY_BUDGET_GB * 1e9,
            )
            pred = prediction.mean.argmax(0).cpu().numpy()
            d = dice_per_class(pred, labels.numpy(), self.config.num_classes)
            scores.append(float(d[1:].mean()))
        self.model.train()
        return float(sum(scores) / len(scores))

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        opts = self.options
        if self.rank == 0:
            what = "" if self.architecture.stochastic else f"the {self.architecture.title} "
            self.progress(
                "train",
                self.fraction_done(),
                f"training {what}on {describe(self.device)}{' with bf16' if self.bf16 else ''}",
            )
            sides = self._describe_sides()
            if sides:
                self.progress("train", self.fraction_done(), sides)
        limit = opts.epoch_limit  # None: the time budget alone ends training
        while (limit is None or self.epoch < limit) and not self.out_of_time():
            start = time.perf_counter()
            losses = self._train_epoch()
            self.epoch += 1
            last = self.epoch == limit or self._budget_spent(time.perf_counter() - start)
            if self.rank != 0:
                if last:
                    break
                continue
            row: dict[str, Any] = {
                "epoch": self.epoch,
                **{k: round(v, 6) for k, v in losses.items()},
                "lr": self.scheduler.get_last_lr()[0],
            }
            has_val = self.val_set is not None and len(self.val_set) > 0
            if has_val and (self.epoch % opts.validate_every == 0 or last):
                row["val_dice"] = round(self.validate(), 6)
            row["seconds"] = round(time.perf_counter() - start, 3)
            self.log.append(row)
            improved = ("val_dice" in row and row["val_dice"] > self.best_dice) or not has_val
            if improved:
                self.best_dice = row.get("val_dice", self.best_dice)
                self.best_epoch = self.epoch
                self.save_model(self.run_dir / BEST_MODEL)
            self._save_checkpoint()
            self._write_log()
            extra = {k: row[k] for k in ("loss", "val_dice") if k in row}
            self.progress(
                "train",
                self.fraction_done(),
                self._epoch_text(self.epoch)
                # an epoch whose every step was skipped (non-finite gradients) has no loss to show
                + (f" loss {row['loss']:.4f}" if "loss" in row else " no update (non-finite gradients)")
                + (f" val Dice {row['val_dice']:.3f}" if "val_dice" in row else ""),
                epoch=self.epoch,
                **({"epochs": limit} if limit is not None else {}),
                **extra,
            )
            if on_epoch is not None:
                on_epoch(row)
            if last:
                break
        if self.rank == 0:
            self.save_model(self.run_dir / LAST_MODEL)

    # -- the wall-clock budget ---------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds of training so far (epochs and their validation), across resumes."""
        return float(sum(row.get("seconds", 0.0) for row in self.log))

    def out_of_time(self) -> bool:
        budget = self.options.time_budget * 60
        return budget > 0 and self.elapsed >= budget

    def _budget_spent(self, epoch_seconds: float) -> bool:
        """Whether the epoch just trained reaches the budget (then it is the
        last one and is validated); rank 0's clock decides for every rank."""
        budget = self.options.time_budget * 60
        spent = torch.tensor([budget > 0 and self.elapsed + epoch_seconds >= budget])
        if self.world > 1:
            dist.broadcast(spent, 0)
        return bool(spent.item())

    def fraction_done(self, epochs: float | None = None) -> float:
        """How far training is (``epochs`` done, default the finished ones): by
        epochs or by the clock, whichever is further."""
        limit = self.options.epoch_limit
        fraction = (self.epoch if epochs is None else epochs) / limit if limit is not None else 0.0
        if self.options.time_budget > 0:
            fraction = max(fraction, self.elapsed / (self.options.time_budget * 60))
        return min(1.0, fraction)

    def _epoch_text(self, epoch: int) -> str:
        limit = self.options.epoch_limit
        return f"epoch {epoch}" if limit is None else f"epoch {epoch}/{limit}"

    def _write_log(self) -> None:
        text = "".join(json.dumps(r) + "\n" for r in self.log)
        write_bytes_atomic(self.run_dir / LOG, text.encode())
        try:
            from .plots import save_training_curves

            save_training_curves(self.log, self.run_dir / CURVES)
        except ImportError:  # matplotlib missing: the JSON log is still there
            pass


def _normalized_config(text: str) -> Any:
    """A checkpoint's config JSON as this engine writes it, so a run started
    before a config field existed (e.g. ``architecture``) still resumes."""
    try:
        return json.loads(json.dumps(ModelConfig.from_dict(json.loads(text)).to_dict()))
    except (TypeError, ValueError, KeyError):
        return None


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every tensor whose name and shape fit (fine-tuning to new classes
    reuses all but the class-dependent first/last layers); returns the names
    left at their fresh initialization."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))
