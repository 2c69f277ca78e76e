"""What ``prepare-data`` does: convert a source data set into the canonical layout, atomically.

Everything is written into a temporary sibling of OUTPUT and renamed into place at the end, so an
interrupted or failed run leaves no half-written OUTPUT.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2tool import __version__
from sam2tool.atomic import atomic_folder, check_replaceable
from sam2tool.data.convert import VideoProblems, convert_video, split_videos
from sam2tool.data.formats import get_format
from sam2tool.data.formats.base import SourceFormat, SourceVideo
from sam2tool.data.layout import FRAMES_DIR, MANIFEST_FILE, MASKS_DIR, Manifest, SkippedVideo, check_name
from sam2tool.errors import DataError, UsageError

DEFAULT_VAL_FRACTION = 0.2

log = logging.getLogger(__name__)


@dataclass
class PrepareOptions:
    """Options of ``prepare-data``.

    Attributes:
        format: Source format name (a key of :data:`sam2tool.data.formats.FORMATS`).
        format_options: The format's own options (an instance of its ``Options``, such as
            ``SyntheticOptions(num_videos=4)``); None takes their defaults.
        val_fraction: Fraction of videos held out; None uses the source's own split when it has one
            (DAVIS ImageSets), else 0.2.
        val_videos: Names of the validation videos (overrides ``val_fraction``).
        seed: Seed of the split (and of the synthetic generator).
        skip_bad: Skip videos with problems (listed in the manifest) instead of stopping.
        force: Replace OUTPUT if it exists.

    """

    format: str
    format_options: object | None = None
    val_fraction: float | None = None
    val_videos: Sequence[str] = ()
    seed: int = 0
    skip_bad: bool = False
    force: bool = False


@dataclass
class PrepareResult:
    """What ``prepare-data`` wrote."""

    output: Path
    manifest: Manifest

    @property
    def frames(self) -> int:
        """Frames written."""
        return sum(len(v.frames) for v in self.manifest.videos.values())

    @property
    def annotated_frames(self) -> int:
        """Frames with a mask."""
        return sum(len(v.annotated) for v in self.manifest.videos.values())

    @property
    def objects(self) -> int:
        """Objects over all videos."""
        return sum(len(v.objects) for v in self.manifest.videos.values())


def make_format(options: PrepareOptions) -> SourceFormat[Any]:
    """The reader for ``options.format``, with its options.

    Raises:
        UsageError: No format has that name.
        TypeError: ``options.format_options`` are not that format's options.

    """
    format_class = get_format(options.format)
    if options.format_options is not None and not isinstance(options.format_options, format_class.Options):
        raise TypeError(
            f"format_options of format {options.format} are {type(options.format_options).__name__}, "
            f"not {format_class.Options.__name__}"
        )
    return format_class(options.format_options, options.seed)


def prepare_data(
    source: Path | None,
    output: Path,
    options: PrepareOptions,
    on_video: Callable[[str, int, int], None] | None = None,
) -> PrepareResult:
    """Convert ``source`` into the canonical layout at ``output``.

    Args:
        source: The source folder (None for the synthetic format).
        output: Folder to create.
        options: See :class:`PrepareOptions`.
        on_video: Called as ``on_video(name, index, total)`` before each video (progress).

    Raises:
        UsageError: Bad arguments (missing source, OUTPUT exists without ``force``, ...).
        DataError: The source has problems (all listed), or no usable video.

    """
    reader = make_format(options)
    if reader.source_kind != "none":
        wants_file = reader.source_kind == "file"
        if source is None or not (source.is_file() if wants_file else source.is_dir()):
            raise UsageError(f"source {'file' if wants_file else 'folder'} {source} does not exist")
        _check_not_nested(source.parent if wants_file else source, output)
    check_replaceable(output, options.force, marker=MANIFEST_FILE, writer="prepare-data")
    with atomic_folder(output) as staging:
        manifest, problems, total = _convert_all(reader.videos(source or Path(".")), staging, options, on_video)
        if total == 0:
            raise DataError(f"{source} has no videos for format {options.format}")
        manifest.source_path = str(source) if source is not None else "generated"
        manifest.skipped += reader.excluded()  # left out by design (COCO images without objects)
        if problems and not options.skip_bad:
            listed = [f"{name}: {problem}" for name, found in problems.items() for problem in found]
            raise DataError(
                f"{len(problems)} of {total} videos have problems (nothing was written; fix them, "
                "or pass --skip-bad to leave those videos out):\n" + "\n".join(listed)
            )
        if not manifest.videos:
            raise DataError(f"none of the {total} videos could be converted; see the problems above")
        manifest.splits = _splits(reader, source, list(manifest.videos), options)
        manifest.save(staging)
    return PrepareResult(output, manifest)


def _check_not_nested(source: Path, output: Path) -> None:
    """OUTPUT and the source must not contain each other (replacing OUTPUT would delete the source)."""
    source, target = source.resolve(), output.resolve()
    if target == source or source in target.parents:
        raise UsageError(f"OUTPUT {output} must not be inside the source folder {source}")
    if target in source.parents:
        raise UsageError(f"OUTPUT {output} contains the source {source}; choose another OUTPUT")


def _convert_all(
    videos: Iterator[SourceVideo],
    staging: Path,
    options: PrepareOptions,
    on_video: Callable[[str, int, int], None] | None,
) -> tuple[Manifest, dict[str, list[str]], int]:
    """Convert videos one at a time, as the reader lists them (nothing is held between videos)."""
    manifest = Manifest(source_format=options.format, source_path="", tool_version=__version__)
    problems: dict[str, list[str]] = {}
    sources: dict[str, str] = {}
    total = 0
    for index, video in enumerate(videos):
        total += 1
        if on_video is not None:
            on_video(video.name, index, 0)
        try:
            if video.name in sources:
                first = sources[video.name]
                raise VideoProblems(
                    video.name, [f"two source videos are both named {video.name!r}: {first} and {video.source}"]
                )
            sources[video.name] = video.source
            manifest.videos[video.name] = convert_video(video, staging)
        except VideoProblems as exc:
            problems.setdefault(video.name, []).extend(exc.problems)
            manifest.skipped.append(SkippedVideo(video.name, exc.problems))
            if video.name not in manifest.videos:
                _remove_video(staging, video.name)
        finally:
            if video.close is not None:
                video.close()
    return manifest, problems, total


def _remove_video(staging: Path, name: str) -> None:
    try:
        check_name(name)
    except DataError:
        return  # nothing was written for an unsafe name
    for folder in (FRAMES_DIR, MASKS_DIR):
        shutil.rmtree(staging / folder / name, ignore_errors=True)


def _splits(
    reader: SourceFormat[Any], source: Path | None, names: list[str], options: PrepareOptions
) -> dict[str, list[str]]:
    """The split asked for, else the source's own (DAVIS ImageSets) where it names a converted video, else random."""
    if options.val_videos or options.val_fraction is not None:
        fraction = DEFAULT_VAL_FRACTION if options.val_fraction is None else options.val_fraction
        return split_videos(names, fraction, options.val_videos, options.seed)
    if source is not None:
        official = reader.splits(source)
        val = [n for n in official.get("val", []) if n in names]
        if val:
            return {"train": sorted(n for n in names if n not in set(val)), "val": sorted(val)}
        if official:
            log.warning("ImageSets of %s name none of the converted videos as val; drawing a random split", source)
    return split_videos(names, DEFAULT_VAL_FRACTION, (), options.seed)
