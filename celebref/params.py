"""The whole params file checked at once: every section by its stage's model, then the rules across them.

``python -m celebref.params --params params.yaml`` prints ``params OK: …`` and exits 0, or prints one line
``error: <section.key>: <message>`` and exits 2. It is the pipeline's first DVC stage (``check_params``,
which depends on the params file itself, so any edit re-runs it and a bad file stops ``dvc repro`` there).
Every stage's entry point loads its section through :func:`load_stage_config`, which checks every known
section the file holds first, so a stage run by hand is checked too.

Checked beyond each section's own model:

- the training section's runs are built as training builds them (dictionary schedule, network, losses,
  data), so a schedule with the wrong number of stage lengths fails here, not when its stage starts;
- across sections: ``curate.min_images`` within ``crawl.max_images``, ``degrade.size`` and
  ``evaluate.size`` equal to ``curate.size``, ``evaluate.tasks`` among ``degrade.test_scales``,
  ``evaluate.split`` one that ``curate.split`` gives identities to.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from celebref.cli import ArgumentParser, bad_input_exits
from celebref.config import (
    ConfigError,
    StageConfig,
    load_section,
    nearest_hint,
    read_params,
    validate_section,
)

if TYPE_CHECKING:
    from dmdnet.train.config import TrainSection

__all__ = ["SECTIONS", "section_model", "validate_params", "check_params_file", "load_stage_config", "main"]

#: Every section of the params file, in pipeline order: ``module:class`` of its model (imported on use).
SECTIONS: dict[str, str] = {
    "crawl": "crawl.config:CrawlConfig",
    "curate": "curate.config:CurateConfig",
    "degrade": "degrade.config:DegradeConfig",
    "train": "dmdnet.train.config:TrainSection",
    "evaluate": "benchmark.evaluate_config:EvaluateConfig",
    "report": "benchmark.report:ReportConfig",
}

C = TypeVar("C", bound=StageConfig)


def section_model(name: str) -> type[StageConfig]:
    """The model class of section ``name`` (a key of :data:`SECTIONS`)."""
    module, _, cls = SECTIONS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def _unknown(name: str, known: list[str], what: str) -> str:
    return f"{name}: unknown {what}; {nearest_hint(name, known, listed='known')}"


def _built(key: str, build: Callable[[], object]) -> None:
    """Run ``build`` (a constructor that validates); its ValueError / TypeError names ``key``."""
    try:
        build()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc


def _check_train(train: TrainSection) -> None:
    """Build what training builds from each run, without any network weights or data."""
    from dmdnet.train.config import MODELS, VariantConfig
    from dmdnet.train.losses import LossWeights

    _built("train.data", train.data_config)
    loss = train.losses
    _built(
        "train.losses",
        lambda: LossWeights(
            mse=loss.mse,
            perceptual=loss.perceptual,
            style=loss.style,
            adversarial=tuple(loss.adversarial),
            adversarial_scales=tuple(loss.adversarial_scales),
        ),
    )
    for model in MODELS:
        where = "train.variants" if model == "dmdnet" else f"train.{model}_variants"
        for name, run in train.variants_of(model).items():
            _built(f"{where}.{name}", lambda run=run: train.trainer_config(run.steps, run.lr))
            _built(f"{where}.{name}.network", run.network.build)  # type: ignore[attr-defined]
            if isinstance(run, VariantConfig):
                _built(f"{where}.{name}.schedule", run.schedule.build)


#: Checks run after a section validates: section → function of its config.
_SECTION_CHECKS: dict[str, Callable[[Any], None]] = {"train": _check_train}


def _check_across(configs: Mapping[str, Any]) -> None:
    """Rules between sections, each checked when both its sections are present."""
    crawl, curate = configs.get("crawl"), configs.get("curate")
    degrade, evaluate = configs.get("degrade"), configs.get("evaluate")
    if crawl is not None and curate is not None and curate.min_images > crawl.max_images:
        raise ConfigError(
            f"curate.min_images: must be <= crawl.max_images ({crawl.max_images}), got {curate.min_images}: "
            "the crawl stores at most that many photos per identity"
        )
    for name, stage in (("degrade", degrade), ("evaluate", evaluate)):
        if stage is not None and curate is not None and stage.size != curate.size:
            raise ConfigError(
                f"{name}.size: must equal curate.size ({curate.size}), the side of the dataset's images, "
                f"got {stage.size}"
            )
    if evaluate is not None and degrade is not None:
        missing = [t for t in evaluate.tasks if t not in degrade.test_scales]
        if missing:
            raise ConfigError(
                f"evaluate.tasks: {', '.join(missing)} not among degrade.test_scales "
                f"({', '.join(degrade.test_scales)}): no such degraded test set is built"
            )
    if evaluate is not None and curate is not None and curate.split.get(evaluate.split, 0) <= 0:
        raise ConfigError(
            f"evaluate.split: curate.split gives '{evaluate.split}' no identity (weight 0 or absent): "
            "nothing to evaluate"
        )


def validate_params(data: Mapping[str, Any], *, complete: bool = True) -> dict[str, StageConfig]:
    """Validate a params mapping; return section name → config, in :data:`SECTIONS` order.

    With ``complete`` (the params check), every section must be present and no other; without it (a
    stage's entry point, a partial file of a test), the known sections present are checked and other keys
    are left alone. Raises :class:`~celebref.config.ConfigError` at the first problem, its message one
    line ``<section.key>: <message>``.
    """
    if complete:
        for name in data:
            if name not in SECTIONS:
                raise ConfigError(_unknown(str(name), list(SECTIONS), "section"))
        missing = [name for name in SECTIONS if name not in data]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: section missing (the pipeline needs every section)")
    configs: dict[str, StageConfig] = {}
    for name in SECTIONS:
        if name in data:
            configs[name] = config = validate_section(section_model(name), data[name], name)
            if name in _SECTION_CHECKS:
                _SECTION_CHECKS[name](config)
    _check_across(configs)
    return configs


def check_params_file(path: str | Path = "params.yaml", *, complete: bool = True) -> dict[str, StageConfig]:
    """:func:`validate_params` on the file at ``path`` (FileNotFoundError when there is none)."""
    return validate_params(read_params(path), complete=complete)


def load_stage_config(model: type[C], section: str, path: str | Path = "params.yaml") -> C:
    """A stage's section, after every known section of the file passed :func:`validate_params`.

    ``section`` may be another name than the stage's usual one (``crawl --section``): it is then loaded by
    ``model`` alone.
    """
    config = check_params_file(path, complete=False).get(section)
    if isinstance(config, model):
        return config
    return load_section(model, section, path)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m celebref.params",
        description="Check the whole params file: every section, and the rules across sections.",
    )
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    args = parser.parse_args(argv)
    with bad_input_exits():
        configs = check_params_file(args.params)
    print(f"params OK: {args.params} ({', '.join(configs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
