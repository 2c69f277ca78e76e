"""The canonical data layout `prepare-data` writes and training reads, and its manifest.

```
ROOT/
  JPEGImages/<video>/<frame>.jpg     frames, zero-padded integer names (00000.jpg)
  Annotations/<video>/<frame>.png    palette PNGs: 0 background, 1..254 objects, 255 void
  manifest.json                      videos, frames, annotated frames, objects, sizes, source
  splits/train.txt, splits/val.txt   one video name per line
```

DAVIS tools read the folders unchanged. The manifest lists frames by file stem, so readers never
guess names, and records for every object the annotated frames in which it is visible.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sam2tool.atomic import atomic_write_text
from sam2tool.errors import DataError

FRAMES_DIR = "JPEGImages"
MASKS_DIR = "Annotations"
MANIFEST_FILE = "manifest.json"
SPLITS_DIR = "splits"
FRAME_SUFFIX = ".jpg"
MASK_SUFFIX = ".png"
VOID_LABEL = 255
MAX_OBJECT_ID = 254
MANIFEST_VERSION = 1

_NATURAL = re.compile(r"([0-9]+)")
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that puts ``2.jpg`` before ``10.jpg`` (ties such as ``Bear``/``bear`` by the raw name)."""
    parts = tuple(int(part) if part.isascii() and part.isdigit() else part.lower() for part in _NATURAL.split(name))
    return (parts, name)


def frame_stem(number: int, width: int = 5) -> str:
    """File stem of frame ``number``: zero-padded to ``width`` digits (``00042``)."""
    return f"{number:0{width}d}"


def stem_width(numbers: list[int]) -> int:
    """Digits needed so that every frame number of a video has a name of the same length (>= 5)."""
    return max(5, *(len(str(n)) for n in numbers)) if numbers else 5


def check_name(name: str, what: str = "video") -> str:
    """Return ``name`` if it is safe as a folder name inside the output, else raise DataError.

    Refuses empty names, ``.``/``..``, path separators, control characters, names starting with
    ``.`` or ``-``, and names with leading or trailing white space (split files could not list them).
    """
    if not name or name in (".", "..") or _UNSAFE.search(name) or name.startswith((".", "-")):
        raise DataError(
            f"{what} name {name!r} cannot be a folder name (no path separators, control characters, "
            "'.' or '..', and no leading '.' or '-')"
        )
    if name != name.strip():
        raise DataError(f"{what} name {name!r} starts or ends with white space; rename the folder")
    return name


@dataclass
class VideoRecord:
    """One video (or one image, for image data sets) of the canonical layout.

    Attributes:
        frames: Frame file stems in temporal order.
        annotated: Stems of the frames that have a mask file (ground truth).
        objects: Object id -> stems of annotated frames where the object is visible.
        height: Frame height in pixels.
        width: Frame width in pixels.
        source: Where the video came from, relative to the source folder.
        kind: ``video``, or ``image`` for single images (COCO).
        object_sources: Object id -> the id or name it had in the source annotations.

    """

    frames: list[str]
    annotated: list[str]
    objects: dict[int, list[str]]
    height: int
    width: int
    source: str
    kind: Literal["video", "image"] = "video"
    object_sources: dict[int, str] = field(default_factory=dict)


@dataclass
class SkippedVideo:
    """A source video left out with ``--skip-bad``, and why."""

    name: str
    problems: list[str]


@dataclass
class Manifest:
    """What ``manifest.json`` holds."""

    source_format: str
    source_path: str
    tool_version: str
    videos: dict[str, VideoRecord] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[SkippedVideo] = field(default_factory=list)
    format_version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        """The manifest as JSON, one line per video (object ids as strings, as JSON requires)."""
        data = asdict(self)
        for video in data["videos"].values():
            video["objects"] = {str(k): v for k, v in video["objects"].items()}
            video["object_sources"] = {str(k): v for k, v in video["object_sources"].items()}
        lines = ["{"]
        for key, value in data.items():
            if key in ("videos", "splits") and value:
                items = [f"    {json.dumps(name)}: {json.dumps(item)}" for name, item in value.items()]
                lines.append(f"  {json.dumps(key)}: {{\n" + ",\n".join(items) + "\n  },")
            else:
                lines.append(f"  {json.dumps(key)}: {json.dumps(value)},")
        lines[-1] = lines[-1].rstrip(",")
        return "\n".join(lines) + "\n}\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> Manifest:
        """Parse ``manifest.json`` text; ``path`` names the file in errors."""
        try:
            data = json.loads(text)
            videos = {
                name: VideoRecord(
                    frames=list(v["frames"]),
                    annotated=list(v["annotated"]),
                    objects={int(k): list(f) for k, f in v["objects"].items()},
                    height=int(v["height"]),
                    width=int(v["width"]),
                    source=str(v["source"]),
                    kind=v.get("kind", "video"),
                    object_sources={int(k): str(s) for k, s in v.get("object_sources", {}).items()},
                )
                for name, v in data["videos"].items()
            }
            return cls(
                source_format=data["source_format"],
                source_path=data["source_path"],
                tool_version=data["tool_version"],
                videos=videos,
                splits={k: list(v) for k, v in data.get("splits", {}).items()},
                skipped=[SkippedVideo(s["name"], list(s["problems"])) for s in data.get("skipped", [])],
                format_version=int(data.get("format_version", MANIFEST_VERSION)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path} is not a sam2tool manifest ({exc}); run `sam2tool prepare-data` again") from None

    def save(self, root: Path) -> None:
        """Write ``root/manifest.json`` and ``root/splits/<name>.txt`` atomically."""
        atomic_write_text(root / MANIFEST_FILE, self.to_json())
        for split, names in self.splits.items():
            atomic_write_text(root / SPLITS_DIR / f"{split}.txt", "".join(f"{n}\n" for n in names))


def load_manifest(root: Path) -> Manifest:
    """Read the manifest of a prepared data folder.

    Raises:
        DataError: ``root`` is not a folder written by ``sam2tool prepare-data``.

    """
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        raise DataError(f"{root} has no {MANIFEST_FILE}; is it a folder written by `sam2tool prepare-data`?")
    return Manifest.from_json(path.read_text(encoding="utf-8"), path)


def read_split(root: Path, split: str) -> list[str]:
    """Video names of ``splits/<split>.txt``.

    Raises:
        DataError: The split file does not exist.

    """
    path = Path(root) / SPLITS_DIR / f"{split}.txt"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(root) / SPLITS_DIR).glob("*.txt"))
        raise DataError(f"{path} does not exist; splits in {root}: {', '.join(available) or 'none'}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def manifest_fingerprint(root: Path | None) -> dict[str, Any] | None:
    """Identify the data a model was trained on: the folder and the SHA-256 of its manifest.

    The manifest lists every video, frame and object, so equal hashes mean equal data sets (as
    written by ``prepare-data``). Returns None when ``root`` is None or has no manifest.
    """
    import hashlib  # here: the format readers import this module, and --help lists them

    if root is None or not (Path(root) / MANIFEST_FILE).is_file():
        return None
    data = (Path(root) / MANIFEST_FILE).read_bytes()
    splits = {p.stem: len(read_split(root, p.stem)) for p in sorted((Path(root) / SPLITS_DIR).glob("*.txt"))}
    return {"root": str(root), "manifest_sha256": hashlib.sha256(data).hexdigest(), "split_videos": splits}
