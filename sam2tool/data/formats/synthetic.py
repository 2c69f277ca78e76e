"""A generated data set for demos, tests and pretraining.

Textured objects move, turn, grow and shrink, occlude each other and leave and re-enter the frame.
Every object keeps its own colour and pattern for the whole video, so tracking by appearance works:
a model can learn it. The same seed gives the same videos. Two styles:

- ``shapes``: objects of well-separated colours over a smooth, low-contrast background (what the
  packaged micro base was pretrained on);
- ``camouflage``: objects coloured and patterned like a cluttered background of patterned patches,
  each patch in the hue of one of the objects and clearly darker, so an object stands out mainly
  by its outline, its brightness and its motion (a domain the base has not seen: the demo
  fine-tunes on it). Objects start apart, so each is whole in the first frame, where it is
  prompted; they meet and occlude each other later.

The videos are drawn by :mod:`sam2tool.data.formats.synthetic_render`, imported when they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sam2tool.data.formats.base import SourceFormat, SourceFrame, SourceVideo, option
from sam2tool.errors import UsageError

#: Styles (``--style``) -> what they look like.
STYLES: dict[str, str] = {
    "shapes": "objects of well-separated colours over a smooth background (the packaged base's pretraining data)",
    "camouflage": "objects coloured and patterned like a cluttered background (a domain the base has not seen)",
}
#: Objects per video when no count is given: 2 or 3.
DEFAULT_OBJECTS = (2, 3)
#: The most objects a synthetic video can have.
MAX_OBJECTS = 8


def parse_objects(text: str) -> tuple[int, int]:
    """``--objects``: ``N`` or ``MIN-MAX`` as an inclusive range.

    Raises:
        UsageError: Not of that form, or outside 1..8.

    """
    low, _, high = text.strip().partition("-")
    try:
        bounds = (int(low), int(high) if high else int(low))
    except ValueError:
        raise UsageError(f"--objects {text!r} is not N or MIN-MAX (for example 3 or 1-3)") from None
    if not 1 <= bounds[0] <= bounds[1] <= MAX_OBJECTS:
        raise UsageError(
            f"--objects {text!r}: give 1 <= MIN <= MAX <= {MAX_OBJECTS} objects per video (for example 1-3)"
        )
    return bounds


@dataclass(frozen=True)
class SyntheticOptions:
    """Options of the synthetic format.

    Attributes:
        num_videos: Number of videos.
        frames: Frames per video.
        size: Frame size in pixels.
        objects: The range (inclusive) of objects per video, (2, 3) by default.
        style: ``shapes`` or ``camouflage`` (see :data:`STYLES`).

    """

    num_videos: int = option("Synthetic: number of videos.", 16, min=1)
    frames: int = option("Synthetic: frames per video.", 24, min=1)
    size: int = option("Synthetic: frame size in pixels.", 256, min=32)
    objects: tuple[int, int] = option(
        "Synthetic: objects per video, N or a range MIN-MAX drawn per video (1 to 8).", "2-3", parse=parse_objects
    )
    style: str = option(
        "Synthetic: " + "; ".join(f"{name}: {text}" for name, text in STYLES.items()) + ".", "shapes", choices=STYLES
    )

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown synthetic style {self.style!r}; styles: {', '.join(STYLES)}")


class SyntheticFormat(SourceFormat[SyntheticOptions]):
    """Generates videos instead of reading them: there is no SOURCE; ``--seed`` draws them."""

    name = "synthetic"
    summary = "generated videos of textured moving objects (--num-videos, --frames, --size, --objects, --style)"
    source_kind = "none"
    Options = SyntheticOptions

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """``num_videos`` videos named ``synthetic_000``, ... with every frame annotated."""
        from sam2tool.data.formats.synthetic_render import LazyVideo

        options = self.options
        for index in range(options.num_videos):
            video = LazyVideo(index, options.frames, options.size, self.seed, options.objects, options.style)
            frames = [
                SourceFrame(t, f"synthetic video {index} frame {t}", partial(video.image, t), partial(video.mask, t))
                for t in range(options.frames)
            ]
            source_name = f"generated ({options.style}, seed {self.seed})"
            yield SourceVideo(f"synthetic_{index:03d}", source_name, frames, close=video.close)
