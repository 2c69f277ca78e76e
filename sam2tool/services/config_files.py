"""What ``init-config`` and ``validate-config`` do: write commented configs, check config files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam2tool.atomic import atomic_write_text
from sam2tool.config.loading import SettingsOrigins, load_settings_with_origins
from sam2tool.config.presets import DEFAULT_PRESET, PRESETS
from sam2tool.config.problems import ConfigError, ConfigProblem, did_you_mean
from sam2tool.config.schema import Sam2ToolSettings
from sam2tool.config.yaml_writer import render_settings_yaml
from sam2tool.errors import Sam2ToolError, UsageError


def preset_settings(preset: str) -> Sam2ToolSettings:
    """The settings of a preset: its values over the defaults (the environment is ignored).

    Raises:
        UsageError: No preset has this name.

    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}'; " + did_you_mean(preset, PRESETS, noun="presets"))
    return Sam2ToolSettings.model_validate(PRESETS[preset].values)


def preset_yaml(preset: str) -> str:
    """The commented YAML that ``init-config --preset`` writes."""
    settings = preset_settings(preset)
    return render_settings_yaml(settings, f"sam2tool config, preset '{preset}': {PRESETS[preset].summary}.")


@dataclass(frozen=True)
class InitConfigResult:
    """What ``init-config`` wrote."""

    path: Path
    preset: str
    overwritten: bool


def init_config(path: Path, preset: str = DEFAULT_PRESET, force: bool = False) -> InitConfigResult:
    """Write a commented config for ``preset`` to ``path`` (atomically).

    Raises:
        UsageError: ``path`` exists and ``force`` is False, ``path`` is a folder, or the preset
            is unknown.

    """
    text = preset_yaml(preset)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give a file name such as {path / 'sam2tool.yaml'}")
    existed = path.exists()
    if existed and not force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it")
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise Sam2ToolError(f"cannot write {path}: {exc.strerror or exc}") from None
    return InitConfigResult(path=path, preset=preset, overwritten=existed)


@dataclass
class FileReport:
    """The outcome of validating one config file.

    Attributes:
        path: The file.
        problems: Everything wrong with it (empty when it is well-formed).
        notes: Things worth knowing that are not errors (e.g. a checkpoint to be downloaded).

    """

    path: Path
    problems: list[ConfigProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON form: ``{"path", "ok", "problems": [...], "notes": [...]}``."""
        return {
            "path": str(self.path),
            "ok": self.ok,
            "problems": [problem.to_json() for problem in self.problems],
            "notes": list(self.notes),
        }


def validate_configs(paths: Sequence[Path], check_paths: bool = False) -> list[FileReport]:
    """Validate each config file; with ``check_paths`` also check the files and folders it names.

    The environment (``SAM2TOOL_*``) is applied as it would be for a run.
    """
    reports = []
    for path in paths:
        report = FileReport(path)
        try:
            settings, origins = load_settings_with_origins(path)
        except ConfigError as exc:
            report.problems = exc.problems
        else:
            if check_paths:
                report.problems, report.notes = check_referenced_paths(settings, origins)
        reports.append(report)
    return reports


def check_referenced_paths(
    settings: Sam2ToolSettings, origins: SettingsOrigins
) -> tuple[list[ConfigProblem], list[str]]:
    """Check that the data folder, the model, the checkpoint and the output folder are usable.

    The model is built with random weights to check ``model.trainable_modules``; a local (or
    cached official) checkpoint is then opened safely and loaded into it. An official checkpoint
    that is not cached yet is only a note, since it is downloaded on first use.

    Returns:
        Problems and notes.

    """
    problems: list[ConfigProblem] = []
    notes: list[str] = []

    def problem(key: str, message: str, value: Any) -> None:
        problems.append(ConfigProblem(key=key, message=message, value=value, source=origins.source(key)))

    root = settings.dataset.root
    if root is None:
        notes.append("dataset.root is not set; train and evaluate need it")
    elif root.is_file():
        problem("dataset.root", f"{root} is a file; give the folder written by `sam2tool prepare-data`", str(root))
    elif not root.is_dir():
        problem("dataset.root", f"folder {root} does not exist; create it with `sam2tool prepare-data`", str(root))
    else:
        for required in (
            "manifest.json",
            f"splits/{settings.dataset.train_split}.txt",
            f"splits/{settings.dataset.val_split}.txt",
        ):
            if not (root / required).is_file():
                problem(
                    "dataset.root",
                    f"{root} has no {required}; is it a folder written by `sam2tool prepare-data`?",
                    str(root),
                )

    output_dir = settings.output.dir
    if output_dir.exists() and not output_dir.is_dir():
        problem("output.dir", f"{output_dir} is a file; runs need a folder there", str(output_dir))

    for found in _check_model(settings, notes):
        problem(found.key, found.message, found.value)
    return problems, notes


def _check_model(settings: Sam2ToolSettings, notes: list[str]) -> list[ConfigProblem]:
    """Check model.trainable_modules and the checkpoint against the model they are for.

    The model is built with random weights; the checkpoint is loaded into it if there is a file.
    """
    from sam2tool.config.registry import get_spec
    from sam2tool.models.build import apply_trainable_modules, compose_model_config, instantiate_model
    from sam2tool.models.checkpoints import load_into, read_state_dict
    from sam2tool.models.download import checkpoint_location, missing_checkpoint_message, official_spec_for

    model_settings = settings.model
    spec = get_spec(model_settings.version, model_settings.size)
    model = instantiate_model(compose_model_config(spec, settings.dataset.image_size))
    found: list[ConfigProblem] = []
    try:
        apply_trainable_modules(model, model_settings.trainable_modules)
    except ConfigError as exc:
        found += exc.problems

    checkpoint: Path | None = None
    if model_settings.checkpoint is None:
        notes.append("model.checkpoint is null: the model starts from random weights")
    else:
        try:
            checkpoint = checkpoint_location(model_settings)
        except Sam2ToolError as exc:
            found.append(ConfigProblem("model.checkpoint", str(exc), model_settings.checkpoint))
    if checkpoint is not None and not checkpoint.is_file():
        if official_spec_for(model_settings) is not None:
            notes.append(
                f"{checkpoint.name} is not in the cache yet; it will be downloaded to {checkpoint} on first use"
            )
        else:
            found.append(
                ConfigProblem("model.checkpoint", missing_checkpoint_message(checkpoint), model_settings.checkpoint)
            )
        checkpoint = None
    if checkpoint is not None:
        try:
            load_into(model, read_state_dict(checkpoint), checkpoint, spec)
        except Sam2ToolError as exc:
            found.append(ConfigProblem("model.checkpoint", str(exc), model_settings.checkpoint))
    return found
