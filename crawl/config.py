"""The crawl stage's configuration: the ``crawl`` section of ``params.yaml``."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from celebref.config import StageConfig
from celebref.images import MAX_PIXELS

__all__ = ["CrawlConfig", "DEFAULT_USER_AGENT"]

# Search engines serve their result pages to browsers; icrawler sends a browser user agent too.
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
)


class CrawlConfig(StageConfig):
    """Everything the crawl stage needs (the project README's crawl section explains each field).

    Paths are relative to the working directory (the repository root under ``dvc repro``).
    """

    engine: str = "local"
    identities_file: Path | None = None

    max_images: int = Field(50, ge=1, description="stored images (status ok) per identity")
    max_candidates: int = Field(200, ge=1, description="download attempts per identity, all runs together")
    min_side: int = Field(0, ge=0, description="refuse images whose shorter side is below this (pixels)")
    max_pixels: int = Field(MAX_PIXELS, ge=1, validate_default=True, description="decompression-bomb guard")

    workers: int = Field(8, ge=1)
    timeout_s: float = Field(10.0, gt=0, description="connect and per-read timeout")
    max_seconds_per_file: float = Field(60.0, gt=0, description="wall-clock cap for one download attempt")
    retries: int = Field(2, ge=0, description="extra attempts after a transient failure")
    backoff_s: float = Field(1.0, ge=0, description="first retry delay; doubles each retry")
    max_bytes: int = Field(20_000_000, ge=1)
    max_redirects: int = Field(5, ge=0)
    allow_private_hosts: bool = False
    allowed_networks: tuple[str, ...] = ()
    user_agent: str = DEFAULT_USER_AGENT
    retry_failed: bool = Field(False, description="re-try URLs whose earlier attempt failed to download")

    # search engines
    search_filters: dict[str, str] = Field(default_factory=dict)
    flickr_apikey_env: str = "FLICKR_APIKEY"

    # engine "urls"
    url_list: Path | None = None

    # engine "local"
    local_root: Path | None = None
    distractor_dir: str | None = None
    distractors_per_identity: int = Field(0, ge=0)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from crawl.engines import ENGINES

        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; allowed: {', '.join(sorted(ENGINES))}")
        return value

    @field_validator("max_pixels")
    @classmethod
    def _room_for_min_side(cls, value: int, info: ValidationInfo) -> int:
        side = info.data.get("min_side")  # absent when min_side itself is invalid
        if side is not None and side * side > value:
            raise ValueError(
                f"must be >= min_side² ({side * side}), got {value}: every image would be refused"
            )
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _valid_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # raises ValueError naming the bad value
        return value

    @model_validator(mode="after")
    def _engine_inputs(self) -> CrawlConfig:
        if self.engine == "local" and self.local_root is None:
            raise ValueError("engine 'local' needs local_root")
        if self.engine == "urls" and self.url_list is None:
            raise ValueError("engine 'urls' needs url_list")
        if self.engine not in ("local", "urls") and self.identities_file is None:
            raise ValueError(f"engine {self.engine!r} needs identities_file")
        if self.distractors_per_identity > 0 and not self.distractor_dir:
            raise ValueError("distractors_per_identity > 0 needs distractor_dir")
        if self.distractor_dir is not None and self.engine != "local":
            raise ValueError("distractor_dir only applies to engine 'local'")
        if self.distractor_dir is not None and (
            not self.distractor_dir.startswith("_")
            or "/" in self.distractor_dir
            or "\\" in self.distractor_dir
        ):
            raise ValueError(
                "distractor_dir must name a sub-folder of local_root starting with '_' "
                f"(so it is no identity), got {self.distractor_dir!r}"
            )
        if self.max_candidates < self.max_images:
            raise ValueError(f"max_candidates ({self.max_candidates}) < max_images ({self.max_images})")
        return self
