"""End-to-end training of LDSeg (paper, Algorithm 1).

loss = CE(y_hat, y) + gamma * DiceLoss(y_hat, y) + lambda * ||eps - eps_hat||^2
(+ optionally SDSeg's L1 latent-estimation loss), all four networks at once,
Adam with an exponentially decaying learning rate, EMA of the denoiser (the
EMA weights are what a model file carries for inference).

The deterministic Res-UNet baseline (``architecture: resunet``) goes through
the same trainer (data, split, augmentation, optimizer, learning-rate decay,
checkpoints, exact resume, validation, log, DDP) with CE + gamma * Dice only
and no EMA: LDSeg's EMA covers its denoiser alone (its encoders and decoder
are used raw), so the baseline's encoder/decoder are used raw as well.

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from ..config import ModelConfig
from ..data.augment import random_flip
from ..device import autocast, describe, use_bf16
from ..diffusion.schedule import NoiseSchedule
from ..errors import InputError, LDSegError
from ..evaluation.metrics import dice_per_class
from ..inference.sampling import SamplingOptions, forward_probabilities, sample_probabilities
from ..io.atomic import write_bytes_atomic
from ..io.modelfile import save_model
from ..nn import build_network
from ..nn.ldseg_net import LDSegNet
from ..progress import null_progress
from .losses import segmentation_loss

CHECKPOINT = "checkpoint.pt"
BEST_MODEL = "best.safetensors"
LAST_MODEL = "last.safetensors"
LOG = "log.jsonl"
MAX_SKIPPED_STEPS = 20
CURVES = "curves.png"


@dataclass
class TrainOptions:
    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    lr_decay: float = 0.99  # per epoch (exponential decay, paper)
    gamma: float = 2.0  # Dice loss weight
    lam: float = 1.0  # noise MSE weight
    latent_l1: float = 0.0  # SDSeg latent-estimation loss weight (0: off)
    ema_decay: float = 0.999
    augment: bool = True  # random flips
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    val_samples: int = 1
    val_steps: int = 2
    validate_every: int = 1


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


def inference_view(model: LDSegNet, denoiser: nn.Module) -> LDSegNet:
    """The model with another denoiser (the EMA one), sharing all other weights."""
    view = copy.copy(model)
    view._modules = dict(model._modules)
    view._modules["denoiser"] = denoiser
    return view


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
        if len(train_set) == 0:
            raise InputError("no training cases")
        self.config, self.options = config, options
        self.train_set, self.val_set = train_set, val_set
        self.run_dir = Path(run_dir)
        self.device = device
        self.progress = progress
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.bf16 = use_bf16(device, options.precision)
        self.schedule = NoiseSchedule(config.diffusion.schedule_config())

        torch.manual_seed(options.seed)  # same initial weights on every rank
        self.model = build_network(config).to(device)
        if init_state is not None:
            load_matching(self.model, init_state)
        self.ema: EMA | None = None  # the Res-UNet baseline has none
        if config.uses_diffusion:
            self.model.denoiser_fp32 = device.type == "cpu"
            self.ema = EMA(self.model.denoiser, options.ema_decay)
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
        model = inference_view(self.model, self.ema.module) if self.ema is not None else self.model
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
        }
        save_model(path, config, self.inference_state())

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
            # multi-rater data draws one rater per case and step; plain sequences (benchmarks) index
            items = [getattr(self.train_set, "training_item", lambda i, _: self.train_set[i])(i, aug_gen) for i in idx]
            images = torch.stack([it[0] for it in items])
            labels = torch.stack([it[1] for it in items])
            if opts.augment:
                images, labels = random_flip(images, labels, aug_gen)
            if self.config.uses_diffusion:
                loss, terms = self._diffusion_loss(images, labels, noise_gen)
            else:
                loss, terms = self._direct_loss(images, labels)
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
                self.ema.update(self.model.denoiser)
            terms["loss"] = loss
            done += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            self.progress(
                "train",
                (self.epoch + (step + 1) / len(batches)) / opts.epochs,
                f"epoch {self.epoch + 1}/{opts.epochs} loss {float(loss.detach()):.4f}",
            )
        self.scheduler.step()
        return {k: v / max(1, done) for k, v in sums.items()}

    def _diffusion_loss(
        self, images: torch.Tensor, labels: torch.Tensor, noise_gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """LDSeg (Algorithm 1): CE + gamma * Dice on the decoded z_t - eps_hat,
        + lambda * noise MSE (+ SDSeg's latent L1); t and noise per sample."""
        opts, dev = self.options, self.device
        b = images.shape[0]
        t = self.schedule.sample_timesteps(b, noise_gen)
        latent = (b, self.config.network.latent_channels, *self.config.latent_grid)
        noise = torch.randn(latent, generator=noise_gen)  # independent per sample
        ab = self.schedule.alpha_bar[t].float().view(b, *([1] * (len(latent) - 1)))
        images, labels, t, noise, ab = (x.to(dev) for x in (images, labels, t, noise, ab))
        with autocast(dev, self.bf16):
            logits, eps_hat, z0, z_t = self.net(images, labels, noise, t, ab.sqrt(), (1 - ab).sqrt())
        ce, dice = segmentation_loss(logits, labels)
        mse = torch.mean((eps_hat.float() - noise) ** 2)
        loss = ce + opts.gamma * dice + opts.lam * mse
        terms = {"loss_ce": ce, "loss_dice": dice, "loss_mse": mse}
        if opts.latent_l1 > 0:
            x0 = (z_t.float() - (1 - ab).sqrt() * eps_hat.float()) / ab.sqrt()
            l1 = torch.mean(torch.abs(x0 - z0.float()))
            loss = loss + opts.latent_l1 * l1
            terms["loss_latent"] = l1
        return loss, terms

    def _direct_loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The Res-UNet baseline: the same CE + gamma * Dice on its logits,
        no diffusion terms."""
        images, labels = images.to(self.device), labels.to(self.device)
        with autocast(self.device, self.bf16):
            logits = self.net(images)
        ce, dice = segmentation_loss(logits, labels)
        return ce + self.options.gamma * dice, {"loss_ce": ce, "loss_dice": dice}

    def _gradients_finite(self) -> bool:
        norms = [p.grad.detach().abs().amax() for p in self.model.parameters() if p.grad is not None]
        return bool(torch.isfinite(torch.stack(norms)).all()) if norms else True

    @torch.inference_mode()
    def validate(self, dataset=None) -> float:
        """Mean foreground Dice on the model grid, predicted as at inference:
        LDSeg sampled (EMA denoiser, DDIM with the validation K, fixed seed),
        the Res-UNet baseline in one forward pass."""
        dataset = dataset if dataset is not None else self.val_set
        if dataset is None or len(dataset) == 0:
            return float("nan")
        view = inference_view(self.model, self.ema.module) if self.ema is not None else self.model
        view.eval()
        opts = SamplingOptions(
            samples=self.options.val_samples,
            steps=self.options.val_steps,
            restandardize=self.config.diffusion.restandardize,
            sampler=self.config.diffusion.sampler,
            seed=0,
            bf16=self.bf16,
        )
        scores = []
        for i in range(len(dataset)):
            image, labels = dataset[i]
            x = image[None].to(self.device)
            if self.config.uses_diffusion:
                with autocast(self.device, self.bf16):
                    z_i = view.encode_image(x).float()
                mean, _ = sample_probabilities(view, z_i, self.schedule, opts)
            else:
                mean = forward_probabilities(view, x, self.bf16)
            pred = mean.argmax(0).cpu().numpy()
            d = dice_per_class(pred, labels.numpy(), self.config.num_classes)
            scores.append(float(d[1:].mean()))
        self.model.train()
        return float(sum(scores) / len(scores))

    def fit(self, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> None:
        opts = self.options
        if self.rank == 0:
            what = "" if self.config.uses_diffusion else "the Res-UNet baseline "
            self.progress(
                "train",
                self.epoch / opts.epochs,
                f"training {what}on {describe(self.device)}{' with bf16' if self.bf16 else ''}",
            )
        while self.epoch < opts.epochs:
            start = time.perf_counter()
            losses = self._train_epoch()
            self.epoch += 1
            if self.rank != 0:
                continue
            row: dict[str, Any] = {
                "epoch": self.epoch,
                **{k: round(v, 6) for k, v in losses.items()},
                "lr": self.scheduler.get_last_lr()[0],
            }
            has_val = self.val_set is not None and len(self.val_set) > 0
            if has_val and (self.epoch % opts.validate_every == 0 or self.epoch == opts.epochs):
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
                self.epoch / opts.epochs,
                f"epoch {self.epoch}/{opts.epochs} loss {row['loss']:.4f}"
                + (f" val Dice {row['val_dice']:.3f}" if "val_dice" in row else ""),
                epoch=self.epoch,
                epochs=opts.epochs,
                **extra,
            )
            if on_epoch is not None:
                on_epoch(row)
        if self.rank == 0:
            self.save_model(self.run_dir / LAST_MODEL)

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
