"""COCO instance annotations reader: every image becomes a one-frame sample.

SOURCE is the annotation JSON (``instances_train2017.json``). Images are looked up by their
``file_name`` in ``--images DIR`` if given, else next to the JSON, else in the folder named after
the JSON's last word beside its folder (``annotations/instances_train2017.json`` ->
``train2017/``). Polygons and RLE (compressed or not) are rasterised exactly as pycocotools does.
Objects are numbered 1..N by decreasing area, so that smaller objects, painted last, stay visible
where instances overlap; crowd regions become void (255). Images without any non-crowd instance
are left out and listed in the manifest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sam2tool.data.formats.base import SourceFormat, SourceFrame, SourceVideo, option
from sam2tool.data.layout import MAX_OBJECT_ID, VOID_LABEL, SkippedVideo
from sam2tool.errors import DataError

if TYPE_CHECKING:  # imported where used: this module is imported to list the formats in --help
    import numpy as np


@dataclass(frozen=True)
class CocoOptions:
    """Options of the COCO format."""

    images: Path | None = option("COCO: folder of the images (default: beside the JSON, or the split folder).")


class CocoFormat(SourceFormat[CocoOptions]):
    """Reader of COCO instance segmentation JSON; images without objects are left out (:meth:`excluded`)."""

    name = "coco"
    summary = "COCO instances JSON (polygons and RLE) as SOURCE; images via --images or beside it"
    source_kind = "file"
    Options = CocoOptions

    def __init__(self, options: CocoOptions | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self._excluded: list[SkippedVideo] = []

    def excluded(self) -> list[SkippedVideo]:
        """The images without any non-crowd instance, found by :meth:`videos`."""
        return self._excluded

    def videos(self, source: Path) -> Iterator[SourceVideo]:
        """One single-frame sample per annotated image."""
        data = _read_json(source)
        categories = {c.get("id"): str(c.get("name", c.get("id"))) for c in data.get("categories", [])}
        by_image: dict[Any, list[dict[str, Any]]] = {}
        for annotation in data.get("annotations", []):
            by_image.setdefault(annotation.get("image_id"), []).append(annotation)
        images = data.get("images", [])
        folder = self._image_folder(source, images)
        used: set[str] = set()
        for image in images:
            file_name = str(image.get("file_name", ""))
            name = _sample_name(file_name, image.get("id"), used)
            annotations = [a for a in by_image.get(image.get("id"), []) if not a.get("iscrowd")]
            if not annotations:
                self._excluded.append(SkippedVideo(name, [f"{file_name}: no object annotations"]))
                continue
            instances = sorted(annotations, key=lambda a: -float(a.get("area", 0.0)))
            crowds = [a for a in by_image.get(image.get("id"), []) if a.get("iscrowd")]
            sources = {
                k + 1: f"{categories.get(a.get('category_id'), a.get('category_id'))} (annotation {a.get('id')})"
                for k, a in enumerate(instances)
            }
            path = _inside(folder, file_name)
            problems = [] if path is not None else [f"file_name {file_name!r} points outside the image folder"]
            if len(instances) > MAX_OBJECT_ID:
                problems.append(f"{file_name} has {len(instances)} objects; at most {MAX_OBJECT_ID} fit a palette PNG")
            frame = SourceFrame(
                0,
                file_name,
                path if path is not None else folder,
                _MaskPainter(instances, crowds, file_name),
            )
            yield SourceVideo(name, file_name, [frame], kind="image", problems=problems, object_sources=sources)

    def _image_folder(self, source: Path, images: list[dict[str, Any]]) -> Path:
        given = self.options.images
        candidates: list[Path | None] = (
            [given] if given is not None else [source.parent, source.parent.parent / source.stem.split("_")[-1]]
        )
        first = next((str(i.get("file_name", "")) for i in images), "")
        for folder in candidates:
            if folder is not None and first and (folder / first).is_file():
                return folder
        if given is not None:
            raise DataError(f"--images {given} does not contain {first}")
        raise DataError(
            f"cannot find the images of {source} (looked for {first} in "
            + ", ".join(str(c) for c in candidates if c is not None)
            + "); pass --images DIR"
        )


class _MaskPainter:
    """Paints the instances of one image into a label map (1..N by decreasing area, crowds void)."""

    def __init__(self, instances: list[dict[str, Any]], crowds: list[dict[str, Any]], file_name: str) -> None:
        self.instances, self.crowds, self.file_name = instances, crowds, file_name

    def __call__(self, height: int, width: int) -> np.ndarray:
        import numpy as np

        from sam2tool.data.images import ImageProblem

        labels = np.zeros((height, width), dtype=np.uint8)
        if len(self.instances) > MAX_OBJECT_ID:
            raise ImageProblem(
                f"{self.file_name} has {len(self.instances)} objects; at most {MAX_OBJECT_ID} fit a palette PNG"
            )
        try:
            for crowd in self.crowds:
                labels[_segment(crowd, height, width)] = VOID_LABEL
            for object_id, instance in enumerate(self.instances, start=1):
                labels[_segment(instance, height, width)] = object_id
        except (ValueError, TypeError, KeyError) as exc:
            raise ImageProblem(f"annotation of {self.file_name} cannot be decoded ({exc})") from None
        return labels


def _segment(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    from sam2tool.data.rle import decode_rle, polygons_to_mask

    segmentation = annotation["segmentation"]
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    mask = decode_rle(segmentation)
    if mask.shape != (height, width):
        raise ValueError(
            f"RLE of annotation {annotation.get('id')} is {mask.shape[1]}x{mask.shape[0]}, image {width}x{height}"
        )
    return mask


def _read_json(source: Path) -> dict[str, Any]:
    if not source.is_file():
        raise DataError(f"COCO annotation file {source} does not exist")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{source} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise DataError(f"{source} is not a COCO instances file (no 'images' and 'annotations')")
    return data


def _inside(folder: Path, file_name: str) -> Path | None:
    """``folder / file_name`` if it stays inside ``folder`` (no absolute paths, no ``..``)."""
    relative = PurePosixPath(file_name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        return None
    return folder.joinpath(*relative.parts)


def _sample_name(file_name: str, image_id: object, used: set[str]) -> str:
    """A folder name from the image's relative path (``patch0/img1.jpg`` -> ``patch0_img1``).

    Names that would collide (``a b.jpg`` and ``a_b.jpg``, ``x.jpg`` and ``x.png``) get the image id.
    """
    relative = PurePosixPath(file_name.replace("\\", "/"))
    stem = "_".join([*relative.parts[:-1], relative.stem]) if relative.parts else ""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in stem).strip("-_.")
    name = safe or f"image_{image_id}"
    if name in used:
        name = f"{name}_{image_id}"
    used.add(name)
    return name
