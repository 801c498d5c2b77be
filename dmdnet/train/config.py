"""Configuration of the training stage: the ``train`` section of ``params.yaml``.

One section for every model; the named ``variants`` are the runs (DVC's ``train_dmdnet`` stage expands
over them, one output folder each). Example::

    train:
      seed: 0
      extra_faces: []            # folders of aligned HQ faces for generic training (the paper adds FFHQ)
      data: {max_references: 8, flip_prob: 0.5, jitter: {brightness: 0.1, contrast: 0.1, saturation: 0.1}}
      trainer: {steps: 300000, batch_size: 8, accumulation: 1, lr: 2.0e-4, dictionary_lr: 2.0e-6, ...}
      losses: {mse: 300, perceptual: 1, style: 0.1, adversarial: [4, 1, 0.5], adversarial_scales: [1, 2, 4]}
      discriminator: {width: 64, depth: 4}
      weights: {dir: null, allow_download: false, vgg19: null}
      variants:
        dmdnet: {network: {}, schedule: {stages: [init, forward, backward, frozen], steps: [...]}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from asffnet.network import ASFFNetConfig
from celebref.config import StageConfig
from dmdnet.network import DMDNetConfig
from dmdnet.train.augment import ColorJitter
from dmdnet.train.data import TrainingDataConfig
from dmdnet.train.dmdnet_task import STAGES, DictionarySchedule
from dmdnet.train.losses import LossWeights
from dmdnet.train.trainer import TrainerConfig
from gfrnet.network import GFRNetConfig

__all__ = [
    "TrainSection",
    "RunConfig",
    "VariantConfig",
    "ASFFNetVariantConfig",
    "GFRNetVariantConfig",
    "MODELS",
]

#: The models ``python -m dmdnet.train --model`` trains, each with its own variants section.
MODELS = ("dmdnet", "asffnet", "gfrnet")


class JitterConfig(StageConfig):
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1


class DataConfig(StageConfig):
    max_references: int = Field(8, ge=0)
    flip_prob: float = Field(0.5, ge=0, le=1)
    jitter: JitterConfig = JitterConfig()


class LoopConfig(StageConfig):
    steps: int = Field(ge=1)
    batch_size: int = Field(8, ge=1)
    accumulation: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    dictionary_lr: float = Field(2e-6, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)  # Adam's (β1, β2); the paper's GAN training: β1 = 0.5
    residual_gain_lr: float = Field(10.0, gt=0)  # the residual output's gain: this multiple of the rate
    plateau_patience: int = Field(3, ge=1)
    settle_patience: int = Field(3, ge=1)
    val_every: int = Field(500, ge=1)
    val_images: int = Field(16, ge=0)
    sample_images: int = Field(2, ge=0)
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)
    workers: int = Field(0, ge=0)
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    stage_lr: Literal["restart", "carry"] = "restart"  # learning rates at a stage change
    optimizer: Literal["adam", "sgd"] = "adam"  # sgd: the DDP equivalence tests

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adam's betas must lie in [0, 1), got {list(betas)}")
        return betas


class LossConfig(StageConfig):
    mse: float = 300.0
    perceptual: float = 1.0
    style: float = 0.1
    adversarial: tuple[float, ...] = (4.0, 1.0, 0.5)
    adversarial_scales: tuple[int, ...] = (1, 2, 4)


class DiscriminatorConfig(StageConfig):
    width: int = Field(64, ge=1)
    depth: int = Field(4, ge=1)


class TrainWeights(StageConfig):
    dir: Path | None = None
    allow_download: bool = False
    vgg19: Path | None = None  # explicit vgg19-dcbb9e9d.pth


class NetworkConfig(StageConfig):
    """Fields of :class:`dmdnet.network.DMDNetConfig`; unset ones keep the release values."""

    channels: int = 64
    key_ratio: int = 4
    items: int = 128
    use_specific: bool = True
    transform_scales: tuple[int, ...] = (256, 128, 64)
    hard_read: bool = False  # w/o T: the best-matching value replaces each transform module
    residual: bool = False  # not in the paper: output = LQ + learned residual (see DMDNetConfig)

    def build(self) -> DMDNetConfig:
        return DMDNetConfig(**self.model_dump())


class ScheduleConfig(StageConfig):
    stages: tuple[Literal[STAGES], ...] = STAGES  # type: ignore[valid-type]
    steps: tuple[int, ...] = (1000, 1000, 1000)
    advance: Literal["steps", "settle"] = "steps"
    items_per_step: int = Field(2, ge=1)  # item faces re-encoded with gradients per init step (k)

    def build(self) -> DictionarySchedule:
        return DictionarySchedule(
            stages=tuple(self.stages),
            steps=tuple(self.steps),
            advance=self.advance,
            items_per_step=self.items_per_step,
        )


class RunConfig(StageConfig):
    """What every named run has: a description, the paper row it reproduces, its own step budget."""

    description: str = ""
    paper_row: str | None = None  # e.g. "Ours(128)", "w/o F" (Table 3), "ASFFNet*" (Table 2)
    steps: int | None = Field(None, ge=1)  # this run's train.trainer.steps (default: that value)
    lr: float | None = Field(None, gt=0)  # this run's train.trainer.lr (default: that value)


class VariantConfig(RunConfig):
    """One named DMDNet run: the network and its dictionary schedule (Table 3 rows are variants)."""

    network: NetworkConfig = NetworkConfig()
    schedule: ScheduleConfig = ScheduleConfig()


class ASFFNetNetworkConfig(StageConfig):
    """Widths of :class:`asffnet.network.ASFFNetConfig`; unset ones keep the release values."""

    stage_channels: tuple[int, ...] = (64, 128, 256)
    channels: int = 128
    mask_channels: tuple[int, ...] = (16, 32, 64, 128, 128)
    asff_blocks: int = Field(4, ge=1)
    residual: bool = False  # output = clamp(LQ + g·network), g from 0 (not in the release; the demo)

    def build(self) -> ASFFNetConfig:
        return ASFFNetConfig(**self.model_dump())


class ASFFNetVariantConfig(RunConfig):
    """One ASFFNet* run (Table 2's ``ASFFNet*`` row is the release-size one)."""

    network: ASFFNetNetworkConfig = ASFFNetNetworkConfig()


class GFRNetNetworkConfig(StageConfig):
    """:class:`gfrnet.network.GFRNetConfig`; unset fields keep its defaults (the paper's widths)."""

    warp_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512, 512)
    rec_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512, 512)
    warp_norm: Literal["batch", "instance", "none"] = "instance"
    rec_norm: Literal["batch", "instance", "none"] = "instance"
    max_flow: float = Field(0.25, gt=0)
    residual: bool = False  # restored = clamp(LQ + g·RecNet), g from 0 (not in the paper; the demo)

    def build(self) -> GFRNetConfig:
        return GFRNetConfig(**self.model_dump())


class GFRNetVariantConfig(RunConfig):
    """One GFRNet* run: the network, the WarpNet pre-training phase and the flow-loss weights."""

    network: GFRNetNetworkConfig = GFRNetNetworkConfig()
    warp_steps: int = Field(0, ge=0)  # steps of WarpNet alone on the flow losses before end-to-end training
    landmark: float = Field(1000.0, ge=0)  # λ of the landmark loss (positions in units of the image side)
    tv: float = Field(1.0, ge=0)  # λ of the flow's total variation


class TrainSection(StageConfig):
    seed: int = Field(0, ge=0)
    extra_faces: tuple[Path, ...] = ()
    data: DataConfig = DataConfig()
    trainer: LoopConfig
    losses: LossConfig = LossConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    weights: TrainWeights = TrainWeights()
    variants: dict[str, VariantConfig]  # DMDNet runs (the train_dmdnet stage)
    asffnet_variants: dict[str, ASFFNetVariantConfig] = {}  # ASFFNet* runs (the train_asffnet stage)
    gfrnet_variants: dict[str, GFRNetVariantConfig] = {}  # GFRNet* runs (the train_gfrnet stage)

    def variants_of(self, model: str) -> Mapping[str, RunConfig]:
        """The named runs of ``model`` (``train.variants`` for DMDNet, ``train.<model>_variants``)."""
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
        runs = {"dmdnet": self.variants, "asffnet": self.asffnet_variants, "gfrnet": self.gfrnet_variants}
        return runs[model]

    def data_config(self, *, min_references: int = 0, reference_rule: str = "random") -> TrainingDataConfig:
        j = self.data.jitter
        return TrainingDataConfig(
            seed=self.seed,
            max_references=max(self.data.max_references, min_references),
            min_references=min_references,
            reference_rule=reference_rule,  # type: ignore[arg-type]
            flip_prob=self.data.flip_prob,
            jitter=ColorJitter(j.brightness, j.contrast, j.saturation),
        )

    def trainer_config(self, steps: int | None = None, lr: float | None = None) -> TrainerConfig:
        """The loop's config; a run's own ``steps`` / ``lr`` replace ``train.trainer.steps`` / ``lr``."""
        t, loss = self.trainer, self.losses
        return TrainerConfig(
            steps=steps or t.steps,
            batch_size=t.batch_size,
            accumulation=t.accumulation,
            lr=lr or t.lr,
            betas=t.betas,
            residual_gain_lr=t.residual_gain_lr,
            plateau_patience=t.plateau_patience,
            settle_patience=t.settle_patience,
            val_every=t.val_every,
            val_images=t.val_images,
            sample_images=t.sample_images,
            checkpoint_every=t.checkpoint_every,
            log_every=t.log_every,
            workers=t.workers,
            seed=self.seed,
            losses=LossWeights(
                mse=loss.mse,
                perceptual=loss.perceptual,
                style=loss.style,
                adversarial=tuple(loss.adversarial),
                adversarial_scales=tuple(loss.adversarial_scales),
            ),
            disc_width=self.discriminator.width,
            disc_depth=self.discriminator.depth,
            precision=t.precision,
            stage_lr=t.stage_lr,
            optimizer=t.optimizer,
        )
