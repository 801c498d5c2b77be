"""Configuration of the evaluation stage: the ``evaluate`` section of ``params.yaml``.

Example::

    evaluate:
      methods: [lq]                 # lq | dmdnet[-generic][:<checkpoint>] | asffnet512
                                    # | asffnet[:<checkpoint>] | folder:<path>
      tasks: [x4, x8]
      split: test
      metrics: [psnr, ssim, lpips, fid, id]
      y_channel: false              # PSNR / SSIM on RGB (BasicSR's default); true: BT.601 Y
      crop_border: 0
      device: cpu
      batch_size: 4
      num_threads: 2
      weights: {dir: null, allow_download: false, lpips_alexnet: null, lpips_linear: null,
                fid_inception: null, dmdnet: null, asffnet512: null}
      faces: {embedder: dlib}       # the Id metric's embedder, labelled Id(<embedder>)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from benchmark.methods import MethodOptions, check_method_name, method_slug
from celebref.config import StageConfig
from curate.dataset import SPLITS
from faces.analysis import FaceAnalyzerConfig

__all__ = ["EvaluateConfig", "WeightsConfig", "METRIC_KEYS"]

#: Metric keys of :mod:`benchmark.metrics.registry` the stage knows how to configure, in table order.
METRIC_KEYS = ("psnr", "ssim", "lpips", "fid", "id")


class WeightsConfig(StageConfig):
    """Where the network metrics' and methods' weights are (see :func:`faces.weights.resolve_weights`).

    Attributes:
        dir: weights cache directory (default ``$CELEBREF_WEIGHTS`` or ``~/.cache/celebref``).
        allow_download: fetch a missing file from its official URL (checked by sha256 where known).
        lpips_alexnet: explicit ``alexnet-owt-7be5be79.pth``.
        lpips_linear: explicit LPIPS v0.1 linear layers (default: the copy shipped in ``lpips``).
        fid_inception: explicit ``pt_inception-2015-12-05-6726825d.pth``.
        dmdnet: explicit official ``DMDNet.pth`` (for ``dmdnet`` / ``dmdnet-generic``; a
            ``dmdnet:<checkpoint>`` method names its own file).
        asffnet512: explicit official ``ASFFNet512.pth`` (for ``asffnet512``).
    """

    dir: Path | None = None
    allow_download: bool = False
    lpips_alexnet: Path | None = None
    lpips_linear: Path | None = None
    fid_inception: Path | None = None
    dmdnet: Path | None = None
    asffnet512: Path | None = None


class EvaluateConfig(StageConfig):
    """The ``evaluate`` section.

    Attributes:
        methods: method names (:mod:`benchmark.methods`), run in this order.
        tasks: degraded test sets to score, read from ``<lq>/<split>_<task>/``.
        split: dataset split the test sets were built from.
        metrics: metric keys (``psnr``, ``ssim``, ``lpips``, ``fid``, ``id``).
        y_channel: PSNR / SSIM on the BT.601 luma instead of RGB.
        crop_border: pixels removed on each side before PSNR / SSIM.
        size: side of ground truth and restored faces.
        device: torch device for network methods and metrics.
        batch_size: images per method call and metric update.
        num_threads: torch CPU threads (``None``: leave torch's default).
        max_references: at most this many references per input for reference-based methods.
        input_landmarks: DMDNet's component boxes of the input from landmarks detected on it (``detect``,
            ground truth when no face is found; the official test practice) or the ground truth's (``gt``).
        weights: weights files (:class:`WeightsConfig`).
        faces: face analysis; its ``embedder`` gives the Id metric (``Id(dlib)`` offline).
    """

    methods: tuple[str, ...] = ("lq",)
    tasks: tuple[str, ...] = ("x4", "x8")
    split: str = "test"
    metrics: tuple[str, ...] = METRIC_KEYS
    y_channel: bool = False
    crop_border: int = Field(default=0, ge=0)
    size: int = Field(default=512, ge=16)
    device: str = "cpu"
    batch_size: int = Field(default=4, ge=1)
    num_threads: int | None = Field(default=None, ge=1)
    max_references: int = Field(default=21, ge=1)
    input_landmarks: Literal["detect", "gt"] = "detect"
    weights: WeightsConfig = WeightsConfig()
    faces: FaceAnalyzerConfig = FaceAnalyzerConfig()

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("methods must name at least one method, e.g. [lq]")
        slugs = [method_slug(check_method_name(name)) for name in value]
        repeated = sorted({s for s in slugs if slugs.count(s) > 1})
        if repeated:
            raise ValueError(f"methods: several entries write to the same results folder: {repeated}")
        return value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("tasks must name at least one task, e.g. [x4]")
        bad = [t for t in value if not t.isidentifier()]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"tasks must be distinct names like 'x4', got {list(value)}")
        return value

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        if value not in SPLITS:
            raise ValueError(f"unknown split {value!r}; allowed: {', '.join(SPLITS)}")
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in value if m not in METRIC_KEYS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; allowed: {', '.join(METRIC_KEYS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"metrics listed twice: {list(value)}")
        return value

    @model_validator(mode="after")
    def _something_left_to_score(self) -> EvaluateConfig:
        if 2 * self.crop_border >= self.size:
            raise ValueError(
                f"crop_border ({self.crop_border}) must be < size / 2 ({self.size / 2:g}): "
                "PSNR / SSIM would have no pixel left"
            )
        return self

    def method_options(self) -> MethodOptions:
        """The options handed to method builders."""
        return MethodOptions(
            size=self.size,
            device=self.device,
            dmdnet_weights=self.weights.dmdnet,
            asffnet_weights=self.weights.asffnet512,
            weights_dir=self.weights.dir,
            allow_download=self.weights.allow_download,
            max_references=self.max_references,
            input_landmarks=self.input_landmarks,
            faces=self.faces,
            batch_size=self.batch_size,
        )
