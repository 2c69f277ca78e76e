"""What a source format is and what it produces: videos made of numbered frames with optional masks.

A format reader only lists what is there and how to load it; decoding, checking and writing
happen once, in :mod:`sam2tool.data.convert`, for every format alike. A format also describes
itself (:class:`SourceFormat`): its name, what SOURCE is, its own options and whether the data set
has its own split, so that registering it (:mod:`sam2tool.data.formats.registry`) is all it takes
for ``prepare-data`` to offer it. This module imports no numpy: ``--help`` lists the formats.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from sam2tool.data.layout import SkippedVideo, natural_key

if TYPE_CHECKING:
    import numpy as np

#: Loads a frame as RGB uint8 pixels: ``(stored, exif_rotated_or_None)``.
FrameLoader = Callable[[], "tuple[np.ndarray, np.ndarray | None]"]
#: Loads a label map (0 background, 1..254 objects, 255 void) for a frame of ``(height, width)``.
MaskLoader = Callable[[int, int], "np.ndarray"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_DIGITS = re.compile(r"[0-9]+")


@dataclass
class SourceFrame:
    """One frame of a source video.

    Attributes:
        number: Frame number (from the file name, or the index in a video file).
        label: How to name the frame in messages (a path relative to the source).
        image: The image file, or a loader for frames that are not files (video files, synthetic).
        mask: The annotation PNG, a loader (RLE, polygons, synthetic), or None when unannotated.

    """

    number: int
    label: str
    image: Path | FrameLoader
    mask: Path | MaskLoader | None = None


@dataclass
class SourceVideo:
    """A video (or single image) found in the source.

    Attributes:
        name: Name in the output (checked to be a safe folder name).
        source: Where it is, relative to the source folder.
        frames: Frames in temporal order.
        kind: ``video``, or ``image`` for single images.
        problems: Problems found while listing (bad file names, duplicate frame numbers).
        object_sources: Output object id -> id or name in the source annotations.

    """

    name: str
    source: str
    frames: list[SourceFrame]
    kind: Literal["video", "image"] = "video"
    problems: list[str] = field(default_factory=list)
    object_sources: dict[int, str] = field(default_factory=dict)
    close: Callable[[], None] | None = None
    """Releases what loading the frames holds (an open video file, rendered frames)."""


#: What SOURCE is for a format: a folder, a file, or nothing (the format generates its videos).
SourceKind = Literal["folder", "file", "none"]
#: Key of a format option's :class:`OptionSpec` in its dataclass field's metadata.
OPTION = "sam2tool.option"


@dataclass(frozen=True)
class OptionSpec:
    """How a field of a format's options is given on the command line: ``--<field-name>``.

    Attributes:
        help: The option's help text (name the format first: ``DAVIS: ...``).
        default: The default as the command line takes it (text when ``parse`` is given).
        min: The least value of a number.
        choices: The values a text option takes (``--help`` lists them).
        parse: Turns the text given into the field's value; raises UsageError on bad text.

    """

    help: str
    default: Any = None
    min: int | None = None
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None


def option(
    help: str,
    default: Any = None,
    *,
    min: int | None = None,
    choices: Iterable[str] = (),
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A field of a format's ``Options`` dataclass that is also a ``prepare-data`` option.

    The option is ``--`` and the field name with ``-`` for ``_`` (``num_videos``: ``--num-videos``).
    Its type is the field's type (text for ``choices`` and ``parse``). With ``parse``, ``default``
    is text too, and the field's default is what it parses to.
    """
    spec = OptionSpec(help, default, min, tuple(choices), parse)
    return field(default=parse(default) if parse is not None else default, metadata={OPTION: spec})


@dataclass(frozen=True)
class NoOptions:
    """The options of a format that has none of its own."""


OptionsT = TypeVar("OptionsT")


class SourceFormat(ABC, Generic[OptionsT]):
    """A reader of one annotation format, and what ``prepare-data`` needs to know about it.

    A format sets ``name``, ``summary`` and, where the defaults do not fit, ``source_kind`` and
    ``Options``, and implements :meth:`videos`; :meth:`splits` and :meth:`excluded` are for data sets
    that have their own split or leave samples out by design.

    Attributes:
        name: The ``--format`` value.
        summary: One line on the source layout it reads (``--format`` help lists it).
        source_kind: What SOURCE is: a ``folder`` (the default), a ``file``, or ``none`` for a format
            that generates its videos (``prepare-data`` then takes only OUTPUT).
        Options: A frozen dataclass of the format's own options, each field declared with
            :func:`option` (each is a ``prepare-data`` option); :class:`NoOptions` by default.
        options: The options of this reader (an ``Options``).
        seed: The ``--seed`` of the run, for formats that draw anything at random.

    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    source_kind: ClassVar[SourceKind] = "folder"
    Options: ClassVar[type[Any]] = NoOptions

    def __init__(self, options: OptionsT | None = None, seed: int = 0) -> None:
        self.options: OptionsT = self.Options() if options is None else options
        self.seed = seed

    @abstractmethod
    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """List the videos of ``source``; raise DataError when the folder is not of this format."""

    def splits(self, source: Path) -> dict[str, list[str]]:
        """The data set's own ``train``/``val`` lists; ``{}`` (the default) when it has none.

        ``prepare-data`` uses the val list unless ``--val-fraction`` or ``--val-videos`` is given;
        without one it draws a random split.
        """
        return {}

    def excluded(self) -> list[SkippedVideo]:
        """Samples :meth:`videos` left out by design (listed in the manifest); none by default."""
        return []


def numbered_files(folder: Path, suffixes: Sequence[str], root: Path) -> tuple[dict[int, Path], list[str]]:
    """The files of ``folder`` whose names are frame numbers, and the problems with the others.

    Names must be integers (``00042.jpg``); ``1.jpg`` and ``001.jpg`` in one folder are the same
    frame twice, which is a problem. Files are taken in natural order.

    Returns:
        ``{number: path}`` and a list of problems (each naming the file).

    """
    found: dict[int, Path] = {}
    problems: list[str] = []
    if not folder.is_dir():
        return found, problems
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        return found, [f"{folder.relative_to(root)} cannot be listed ({exc.strerror or exc})"]
    candidates = [p for p in entries if p.suffix.lower() in suffixes]
    for path in candidates:
        if path.is_symlink() and not path.exists():
            problems.append(f"{path.relative_to(root)} is a broken symbolic link")
    files = sorted((p for p in candidates if p.is_file()), key=lambda p: natural_key(p.name))
    for path in files:
        if not _DIGITS.fullmatch(path.stem):
            problems.append(f"{path.relative_to(root)}: frame names must be numbers such as 00042{path.suffix}")
            continue
        number = int(path.stem)
        if number in found:
            problems.append(
                f"{path.relative_to(root)} and {found[number].relative_to(root)} are both frame {number}; keep one"
            )
            continue
        found[number] = path
    return found, problems


def frames_with_masks(
    image_dir: Path, mask_dir: Path, root: Path, image_suffixes: Sequence[str] = IMAGE_SUFFIXES
) -> tuple[list[SourceFrame], list[str]]:
    """Pair the numbered images of ``image_dir`` with the numbered PNGs of ``mask_dir``.

    Masks without a frame are problems; frames without a mask are unannotated frames.
    """
    images, problems = numbered_files(image_dir, image_suffixes, root)
    masks, mask_problems = numbered_files(mask_dir, (".png",), root)
    problems += mask_problems
    for number in sorted(set(masks) - set(images)):
        problems.append(f"{masks[number].relative_to(root)} has no frame {number} in {image_dir.relative_to(root)}")
    frames = [
        SourceFrame(number, str(path.relative_to(root)), path, masks.get(number))
        for number, path in sorted(images.items())
    ]
    return frames, problems
