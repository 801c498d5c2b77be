"""The toolkit's one training loop, shared by every model (:class:`dmdnet.train.task.TrainableRestorer`).

Per step: the model's structural hook (e.g. a dictionary stage change), ``accumulation`` generator
micro-batches (the shared loss of :mod:`dmdnet.train.losses` plus the model's own terms, divided by
``accumulation``), one Adam step; then, with adversarial weights, one hinge step of the multi-scale
discriminators on the same micro-batches (real and fake in one forward). Adam ``β = (0.5, 0.999)``; every
learning rate is halved when the validation reconstruction loss plateaus (``ReduceLROnPlateau``).

Data: a global batch of ``batch_size`` faces per step, taken in the order of a permutation drawn from
``(seed, epoch)``; rank ``r`` of ``W`` takes its ``batch_size / W`` slice and cuts it into ``accumulation``
micro-batches, so one process and W processes see the same global batch. Every sample is seeded by
``(seed, epoch, index)`` (:mod:`dmdnet.train.data`), so data are the same in any worker on any rank.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the generator and the discriminators are wrapped in
DDP (NCCL on GPU, gloo on CPU); gradients of non-final micro-batches are not synchronised; rank 0 alone
validates, logs and writes checkpoints.

Checkpoints (``<out>/checkpoints/last.pt``, written atomically every ``checkpoint_every`` steps and at the
end, plain tensors and numbers, loaded with ``weights_only=True``) hold the model (dictionary stage
included), discriminators, optimisers, schedulers, RNG states and the data position, so ``resume``
continues exactly where the run stopped.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmark.metrics.pixel import psnr, ssim
from celebref.atomic import atomic_path
from celebref.images import write_png
from degrade.pairs import EpochDataset
from dmdnet.train.discriminator import MultiScaleDiscriminator
from dmdnet.train.losses import LossWeights, VGGFeatures, generator_loss, hinge_d_loss, mse_loss
from dmdnet.train.spectral import hold_power_iteration, power_iteration_step
from dmdnet.train.task import TrainableRestorer

__all__ = ["TrainerConfig", "Trainer", "rank_batches", "DistributedContext", "distributed_context"]

_CHECKPOINT_FORMAT = "celebref-training"


@dataclass(frozen=True)
class TrainerConfig:
    """Optimisation, schedule, logging and checkpointing of one run (paper values where it states them)."""

    steps: int
    batch_size: int = 8  # the global batch: all ranks, all micro-batches
    accumulation: int = 1  # micro-batches per step and rank
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    #: The residual output's gain (``residual: true``, not in the paper) learns at this multiple of the rate:
    #: one scalar that Adam moves by about ``lr`` a step would need hundreds of steps to reach the size of a
    #: face's residual, and while it is small every other gradient is scaled down by it.
    residual_gain_lr: float = 10.0
    plateau_factor: float = 0.5
    plateau_patience: int = 3  # validations without improvement before the learning rates are halved
    settle_patience: int = 3  # validations without improvement before the validation loss counts as settled
    val_every: int = 500
    val_images: int = 16
    sample_images: int = 2
    checkpoint_every: int = 500
    log_every: int = 10
    workers: int = 0
    seed: int = 0
    losses: LossWeights = field(default_factory=LossWeights)
    disc_width: int = 64
    disc_depth: int = 4
    precision: str = "auto"  # fp32 | bf16 | auto: bf16 on a GPU that supports it, else fp32
    #: learning rates at a stage change (a model's ``enter_step``): ``restart`` at the configured values
    #: with a fresh plateau schedule, or ``carry`` the halvings so far over to the new stage
    stage_lr: str = "restart"
    #: ``adam`` (the paper), or plain ``sgd`` (no momentum; its step is proportional to the gradient, which
    #: is what the DDP equivalence tests compare)
    optimizer: str = "adam"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.accumulation < 1:
            raise ValueError(f"steps, batch_size and accumulation must be >= 1, got {self}")
        positive = (self.val_every, self.checkpoint_every, self.log_every, self.plateau_patience)
        if min(positive) < 1 or self.workers < 0 or self.val_images < 0 or self.sample_images < 0:
            raise ValueError(f"val_every, checkpoint_every, log_every, plateau_patience must be >= 1: {self}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")
        if self.stage_lr not in ("restart", "carry"):
            raise ValueError(f"stage_lr must be restart or carry, got {self.stage_lr!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")


# -- distribution ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_context() -> DistributedContext:
    """Rank and world from torchrun's environment; starts the process group when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def rank_batches(
    n: int, *, epoch: int, seed: int, batch_size: int, rank: int, world: int, accumulation: int
) -> list[list[int]]:
    """This rank's micro-batches of one epoch, step by step (``accumulation`` lists per step).

    The epoch's order is a permutation drawn from ``(seed, epoch)``; a dataset smaller than one global
    batch is repeated (a second permutation after the first, and so on) to fill it.
    """
    per_rank, rest = divmod(batch_size, world)
    micro, rest2 = divmod(per_rank, accumulation)
    if rest or rest2 or micro == 0:
        raise ValueError(
            f"batch_size {batch_size} must split into {world} ranks × {accumulation} micro-batches evenly"
        )
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order: list[int] = []
    while len(order) < max(n, batch_size):
        order += torch.randperm(n, generator=gen).tolist()
    steps = len(order) // batch_size
    out = []
    for step in range(steps):
        mine = order[step * batch_size + rank * per_rank :][:per_rank]
        out += [mine[m * micro : (m + 1) * micro] for m in range(accumulation)]
    return out


# -- the loop ---------------------------------------------------------------------------------------------
def _device(ctx: DistributedContext) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank)
    return torch.device("cpu")


def _to(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
            return [v.to(device, non_blocking=True) for v in value]
        return value

    return {k: move(v) for k, v in batch.items()}


def _image(tensor: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` in ``[-1, 1]`` → ``(H, W, 3)`` uint8."""
    x = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round()
    return x.permute(1, 2, 0).to(torch.uint8).cpu().numpy()


class Trainer:
    """Trains one :class:`TrainableRestorer` (see the module docstring).

    Args:
        model: the model, freshly built (a resumed run loads its state into it).
        train_set: training samples (:class:`dmdnet.train.data.TrainingFaces` or alike).
        val_set: validation samples (epoch 0, fixed) or ``None`` (no plateau schedule, no settling).
        config: the run.
        out_dir: checkpoints, ``log.csv``, samples and the export go here.
        collate: batch maker (:func:`dmdnet.train.data.collate_samples`).
        vgg: the VGG-19 features, needed when perceptual / style weights are > 0.
    """

    def __init__(
        self,
        model: TrainableRestorer,
        train_set: EpochDataset,
        val_set: EpochDataset | None,
        config: TrainerConfig,
        out_dir: str | Path,
        *,
        collate: Callable[[Sequence[Any]], dict[str, Any]],
        vgg: VGGFeatures | None = None,
        context: DistributedContext | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        self.config = config
        self.ctx = context or distributed_context()
        self.device = _device(self.ctx) if device is None else torch.device(device)
        self.out_dir = Path(out_dir)
        self.collate = collate
        self.train_set, self.val_set = train_set, val_set
        if config.losses.needs_vgg and vgg is None:
            raise ValueError(
                "perceptual / style weights > 0 need the VGG-19 features (VGGFeatures.from_file)"
            )
        self.vgg = None if vgg is None else vgg.to(self.device)
        self.dtype = self._precision()
        self.model = model.to(self.device)
        self.adversarial = any(w > 0 for w in config.losses.adversarial)
        self.disc: MultiScaleDiscriminator | None = None
        if self.adversarial:
            scales = config.losses.adversarial_scales
            self.disc = MultiScaleDiscriminator(scales, config.disc_width, config.disc_depth).to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
            if self.disc is not None:
                self.disc.to(memory_format=torch.channels_last)
        self.step = 0
        self.epoch = 0
        self.position = 0  # steps done in the current epoch
        self.best_val = math.inf
        self.stale_vals = 0
        self._build_optimizers()

    # -- set-up ------------------------------------------------------------------------------------------
    def _precision(self) -> torch.dtype:
        from celebref.hardware import capabilities

        wanted = self.config.precision
        if wanted == "auto":
            wanted = "bf16" if self.device.type == "cuda" and capabilities(self.device).bf16 else "fp32"
        capabilities(self.device).require(wanted)
        return torch.bfloat16 if wanted == "bf16" else torch.float32

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.ctx.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers (spectral-norm vectors, the generic faces) are the same function of the synchronised
        # weights on every rank: nothing to broadcast
        return DistributedDataParallel(
            module, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False
        )

    def _optimizer(self, params: Any) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr)
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)

    def _gain_group(self, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``groups`` with the residual gain (a model with ``residual: true``) in a group of its own, at
        ``residual_gain_lr`` times the rate of the group it came from."""
        gains = {id(p) for name, p in self.model.named_parameters() if name.split(".")[-1] == "residual_gain"}
        out, moved = [], []
        for group in groups:
            kept = [p for p in group["params"] if id(p) not in gains]
            moved += [(p, group["lr"]) for p in group["params"] if id(p) in gains]
            out.append({**group, "params": kept})
        factor = self.config.residual_gain_lr
        return out + [{"params": [p], "lr": lr * factor, "name": "residual_gain"} for p, lr in moved]

    def _plateau(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
        cfg = self.config
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.plateau_factor, patience=cfg.plateau_patience - 1
        )

    def _build_optimizers(self, *, stage_change: bool = False) -> None:
        """(Re)build optimisers and DDP wrappers for the model's current parameters.

        Moments of parameters that existed before are carried over (a stage change adds or removes
        parameters; the rest continue as they were). At a stage change the learning rates restart at the
        configured values with a fresh plateau schedule (``stage_lr: restart``; the halving that fired at
        the validation that ended the stage would otherwise start the new one at half its rates), or keep
        their halvings (``carry``). The discriminators' rates follow the generator's.
        """
        cfg = self.config
        old = getattr(self, "opt_g", None)
        old_sched = getattr(self, "sched_g", None)
        carry = old is not None and not (stage_change and cfg.stage_lr == "restart")
        scale = old.param_groups[0]["lr"] / cfg.lr if carry and old is not None else 1.0
        groups = self._gain_group(self.model.param_groups(cfg.lr))
        for g in groups:
            g["lr"] *= scale
        self.opt_g = self._optimizer(groups)
        self.sched_g = self._plateau(self.opt_g)
        if old is not None:
            for group in self.opt_g.param_groups:
                for p in group["params"]:
                    if p in old.state:
                        self.opt_g.state[p] = old.state[p]
        if carry and old_sched is not None:
            for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch"):
                setattr(self.sched_g, key, getattr(old_sched, key))
        self.ddp_model = self._wrap(self.model)
        if self.disc is not None and not hasattr(self, "opt_d"):
            self.opt_d = self._optimizer(self.disc.parameters())
            self.sched_d = self._plateau(self.opt_d)
            self.ddp_disc = self._wrap(self.disc)
        elif self.disc is not None and stage_change and cfg.stage_lr == "restart":
            for group in self.opt_d.param_groups:
                group["lr"] = cfg.lr
            self.sched_d = self._plateau(self.opt_d)

    # -- data --------------------------------------------------------------------------------------------
    def _epoch_batches(self) -> list[list[int]]:
        cfg = self.config
        return rank_batches(
            len(self.train_set),
            epoch=self.epoch,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            rank=self.ctx.rank,
            world=self.ctx.world,
            accumulation=cfg.accumulation,
        )

    def _batches(self) -> Iterator[list[dict[str, Any]]]:
        """The micro-batches of each step, from the current position on, epoch after epoch."""
        acc = self.config.accumulation
        while True:
            batches = self._epoch_batches()
            self.train_set.set_epoch(self.epoch)
            loader = DataLoader(
                self.train_set,
                batch_sampler=batches[self.position * acc :],
                collate_fn=self.collate,
                num_workers=self.config.workers,
            )
            step_batches: list[dict[str, Any]] = []
            for batch in loader:
                step_batches.append(_to(batch, self.device))
                if len(step_batches) == acc:
                    yield step_batches
                    step_batches = []
            self.epoch += 1
            self.position = 0

    # -- one step ----------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        enabled = self.dtype != torch.float32
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=enabled)

    def _no_sync(self, module: nn.Module, last: bool) -> contextlib.AbstractContextManager:
        if isinstance(module, DistributedDataParallel) and not last:
            return module.no_sync()
        return contextlib.nullcontext()

    def _generator_step(self, micro: list[dict[str, Any]]) -> tuple[dict[str, float], list[torch.Tensor]]:
        cfg, acc = self.config, len(micro)
        self.opt_g.zero_grad(set_to_none=True)
        if self.disc is not None:
            self.disc.requires_grad_(False)
        logged: dict[str, float] = {}
        fakes = []
        for k, batch in enumerate(micro):
            with self._no_sync(self.ddp_model, k == acc - 1), self._autocast():
                output = self.ddp_model(batch)
                if self.model.restoration_losses:
                    logits = self.disc(output) if self.disc is not None else ()
                    terms = generator_loss(
                        output.float(), batch["gt"], cfg.losses, vgg=self.vgg, fake_logits=logits
                    )
                else:  # a stage trained on the model's own terms alone
                    terms = {"total": torch.zeros((), device=self.device)}
                extra = self.model.extra_losses(batch, output)
                total = terms.pop("total") + sum(extra.values(), torch.zeros((), device=self.device))
                (total / acc).backward()
            fakes.append(output.detach())
            for name, value in {**terms, **extra, "total": total}.items():
                logged[name] = logged.get(name, 0.0) + float(value.detach()) / acc
        self.opt_g.step()
        return logged, fakes

    def _discriminator_step(self, micro: list[dict[str, Any]], fakes: list[torch.Tensor]) -> float:
        assert self.disc is not None
        self.disc.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        acc, loss_sum = len(micro), 0.0
        for k, (batch, fake) in enumerate(zip(micro, fakes, strict=True)):
            with self._no_sync(self.ddp_disc, k == acc - 1), self._autocast():
                logits = self.ddp_disc(torch.cat([batch["gt"], fake.to(batch["gt"].dtype)]))
                b = fake.shape[0]
                loss = sum(
                    (hinge_d_loss(lg[:b].float(), lg[b:].float()) for lg in logits),
                    torch.zeros((), device=self.device),
                )
                (loss / acc).backward()
            loss_sum += float(loss.detach()) / acc
        self.opt_d.step()
        return loss_sum

    def _global_mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over ranks of each logged loss (each rank computed it on its part of the batch)."""
        if self.ctx.world == 1:
            return values
        names = sorted(values)
        vector = torch.tensor([values[n] for n in names], dtype=torch.float64, device=self.device)
        dist.all_reduce(vector)
        return {n: float(v) / self.ctx.world for n, v in zip(names, vector.tolist(), strict=True)}

    # -- validation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Reconstruction MSE, PSNR and SSIM on the validation faces (rank 0); sample images written."""
        assert self.val_set is not None
        cfg = self.config
        self.model.eval()
        self.val_set.set_epoch(0)
        count = min(cfg.val_images, len(self.val_set)) or len(self.val_set)
        mse, psnrs, ssims, tiles = 0.0, [], [], []
        with self.model.validation_items():
            for index in range(count):
                batch = _to(self.collate([self.val_set[index]]), self.device)
                with self._autocast():
                    output = self.model(batch, training=False).float()
                mse += float(mse_loss(output, batch["gt"])) / count
                out, gt = _image(output[0]), _image(batch["gt"][0])
                psnrs.append(psnr(out, gt))
                ssims.append(ssim(out, gt))
                if index < cfg.sample_images:
                    tiles.append(np.concatenate([_image(batch["lq"][0]), out, gt], axis=1))
        hold_power_iteration(self.model.train())
        if tiles:
            path = self.out_dir / "samples" / f"step_{self.step:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_png(path, np.concatenate(tiles, axis=0))
        return {"val_mse": mse, "val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}

    def _after_validation(self, val_loss: float) -> None:
        """Learning-rate schedule and the 'settled' state, the same on every rank."""
        if self.ctx.world > 1:
            value = torch.tensor([val_loss], dtype=torch.float64, device=self.device)
            dist.broadcast(value, 0)
            val_loss = float(value)
        self.sched_g.step(val_loss)
        if self.disc is not None:
            self.sched_d.step(val_loss)
        if val_loss < self.best_val:
            self.best_val, self.stale_vals = val_loss, 0
        else:
            self.stale_vals += 1

    @property
    def settled(self) -> bool:
        return self.stale_vals >= self.config.settle_patience

    # -- checkpoints -------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pt"

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "format": _CHECKPOINT_FORMAT,
            "step": self.step,
            "epoch": self.epoch,
            "position": self.position,
            "stage": self.model.stage,
            "best_val": self.best_val,
            "stale_vals": self.stale_vals,
            "model": self.model.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "sched_g": self.sched_g.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.disc is not None:
            state.update(
                disc=self.disc.state_dict(), opt_d=self.opt_d.state_dict(), sched_d=self.sched_d.state_dict()
            )
        return state

    def save_checkpoint(self) -> None:
        if not self.ctx.is_main:
            return
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(self.state_dict(), tmp)

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from ``path`` exactly (see the module docstring)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from: {path}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a training checkpoint of this toolkit")
        if (state.get("disc") is None) != (self.disc is None):
            raise ValueError(
                f"{path}: discriminators {'present' if self.disc is None else 'missing'} in the checkpoint"
            )
        self.model.restore_stage(state["stage"])
        self.model.load_state_dict(state["model"])
        self._build_optimizers()
        self.opt_g.load_state_dict(state["opt_g"])
        self.sched_g.load_state_dict(state["sched_g"])
        if self.disc is not None:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.sched_d.load_state_dict(state["sched_d"])
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.best_val, self.stale_vals = state["best_val"], state["stale_vals"]
        torch.set_rng_state(state["rng_cpu"].cpu())
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), self.device)

    # -- logging -----------------------------------------------------------------------------------------
    def _log_rows(self, rows: list[dict[str, Any]]) -> None:
        if not self.ctx.is_main or not rows:
            return
        path = self.out_dir / "log.csv"
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        old: list[dict[str, str]] = []
        if path.is_file():
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                old = list(reader)
                fields = list(reader.fieldnames or []) + [
                    k for k in fields if k not in (reader.fieldnames or [])
                ]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(old)
            writer.writerows(rows)

    def _trim_log(self) -> None:
        """On resume: drop log rows past the checkpoint (steps that will be run again)."""
        path = self.out_dir / "log.csv"
        if not self.ctx.is_main or not path.is_file():
            return
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields, rows = reader.fieldnames or [], [r for r in reader if int(r["step"]) <= self.step]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def _tensorboard(self) -> Any:
        if not self.ctx.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    # -- the run -----------------------------------------------------------------------------------------
    def fit(self, *, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``config.steps`` (or ``stop_after`` steps of this call); returns the last log row."""
        cfg = self.config
        if resume:
            self.load_checkpoint(self.checkpoint_path)
            self._trim_log()
        hold_power_iteration(self.model.train())
        last_step = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        writer = self._tensorboard()
        bar = tqdm(total=cfg.steps, initial=self.step, desc="train", disable=not self.ctx.is_main)
        batches = self._batches()
        rows: list[dict[str, Any]] = []
        row: dict[str, Any] = {}
        tick = time.perf_counter()
        while self.step < last_step:
            if self.model.enter_step(self.step, settled=self.settled):
                self._build_optimizers(stage_change=True)
                self.best_val, self.stale_vals = math.inf, 0
                if self.ctx.is_main:
                    tqdm.write(f"step {self.step}: stage {self.model.stage}")
            micro = next(batches)
            for module in (self.model, self.disc):
                if module is not None:
                    power_iteration_step(module)
            losses, fakes = self._generator_step(micro)
            if self.disc is not None and self.model.restoration_losses:
                losses["d_hinge"] = self._discriminator_step(micro, fakes)
            self.model.end_step()
            losses = self._global_mean(losses)
            self.step += 1
            self.position += 1
            row = {
                "step": self.step,
                "epoch": self.epoch,
                "stage": self.model.stage,
                "lr": self.opt_g.param_groups[0]["lr"],
                **{k: round(v, 6) for k, v in losses.items()},
                "sec_per_step": round(time.perf_counter() - tick, 4),
            }
            tick = time.perf_counter()
            if self.val_set is not None and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                val = self.validate() if self.ctx.is_main else {"val_mse": 0.0}
                self._after_validation(val["val_mse"])
                row.update({k: round(v, 6) for k, v in val.items()} if self.ctx.is_main else {})
            if self.step % cfg.log_every == 0 or "val_mse" in row or self.step == last_step:
                rows.append(row)
                if writer is not None:
                    for k, v in row.items():
                        if isinstance(v, float):
                            writer.add_scalar(k, v, self.step)
            bar.update(1)
            bar.set_postfix({k: row[k] for k in ("total", "stage") if k in row})
            if self.step % cfg.checkpoint_every == 0 or self.step == last_step:
                self._log_rows(rows)
                rows = []
                self.save_checkpoint()
        bar.close()
        self._log_rows(rows)
        if writer is not None:
            writer.close()
        return row
