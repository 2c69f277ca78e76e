"""Reading frames and masks the way users have them, writing them the way DAVIS tools read them.

Masks arrive as palette PNGs (DAVIS, YouTube-VOS, MOSE), grayscale label or 0/255 binary PNGs
(DAVIS 2016), 16-bit PNGs, or RGB images whose colours stand for objects. They all become a
``uint8`` label map: 0 background, 1..254 objects, 255 void. Nothing is ever quantised: a colour
or value that has no exact meaning is an error naming the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sam2tool.data.layout import MAX_OBJECT_ID, VOID_LABEL

#: EXIF tag holding the orientation of the stored pixels.
_EXIF_ORIENTATION = 0x0112
#: Image modes whose conversion to RGB is exact (16-bit and float images would be clipped).
_EIGHT_BIT_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr")


class ImageProblem(ValueError):
    """A frame or mask that cannot be used; the message names the file."""


def davis_palette() -> np.ndarray:
    """The 256-colour palette of DAVIS / PASCAL VOC masks, shape (256, 3), uint8."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    return palette


PALETTE = davis_palette()
_PALETTE_LOOKUP = {tuple(int(c) for c in colour): index for index, colour in enumerate(PALETTE)}


def _open(path: Path | bytes, what: str, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(path) if isinstance(path, bytes) else path)
            image.load()  # decode now: truncated or corrupt files fail here, not later
        return image
    except PermissionError:
        raise ImageProblem(f"{what} {name} cannot be read: permission denied") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageProblem(
            f"{what} {name} is too large to decode safely (over {Image.MAX_IMAGE_PIXELS:,} pixels)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"{what} {name} cannot be decoded ({exc}); the file is corrupt or truncated") from None


def exif_orientation(image: Image.Image) -> int:
    """EXIF orientation of an opened image (1 = stored upright)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: treat as upright
        return 1


def read_frame(path: Path | bytes, name: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a frame as RGB uint8 (H, W, 3).

    Returns:
        The pixels as stored, and the EXIF-rotated pixels when the file has an orientation other
        than upright (None otherwise). Which one matches the annotations is decided by the caller.

    Raises:
        ImageProblem: The file is corrupt, truncated, not an image, or not 8-bit.

    """
    name = name or str(path)
    image = _open(path, "frame", name)
    if image.mode not in _EIGHT_BIT_MODES:
        raise ImageProblem(f"frame {name} has image mode {image.mode}; save frames as 8-bit RGB or grayscale images")
    stored = np.asarray(image.convert("RGB"))
    rotated = None
    if exif_orientation(image) != 1:
        rotated = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    return stored, rotated


def is_plain_jpeg(path: Path) -> bool:
    """Whether a file is a JPEG whose bytes can be copied as a frame (RGB or gray, no EXIF rotation)."""
    try:
        with Image.open(path) as image:
            return image.format == "JPEG" and image.mode in ("RGB", "L") and exif_orientation(image) == 1
    except (UnidentifiedImageError, OSError):
        return False


def read_label_mask(path: Path | bytes, name: str = "") -> np.ndarray:
    """Decode an annotation PNG into a uint8 label map (0 background, 1..254 objects, 255 void).

    Raises:
        ImageProblem: The file is corrupt, or its values/colours have no exact meaning.

    """
    name = name or str(path)
    image = _open(path, "mask", name)
    mode = image.mode
    if mode == "P":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("L", "LA"):
        return _labels_from_values(np.asarray(image.getchannel(0)), name, 255)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return _labels_from_values(np.asarray(image), name, 65535)
    if mode == "RGBA":
        rgba = np.asarray(image)
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 0  # fully transparent pixels are background
        return _labels_from_colours(rgb, name)
    if mode == "RGB":
        return _labels_from_colours(np.asarray(image), name)
    raise ImageProblem(f"mask {name} has image mode {mode}; save masks as palette, grayscale or RGB PNGs")


def _labels_from_values(values: np.ndarray, name: str, full_scale: int) -> np.ndarray:
    present = np.unique(values)
    found = set(present.tolist())
    for on in (full_scale, VOID_LABEL):
        if found <= {0, on}:
            return np.asarray(values == on, dtype=np.uint8)  # a binary mask: one object
    ids = found - {0, VOID_LABEL}
    if len(ids) > 64 or _only_on_edges(values):
        raise ImageProblem(
            f"mask {name} is a grayscale image with {len(found)} levels: it looks like a soft or "
            "anti-aliased binary mask, not object ids; save masks with exact ids (0 background, 1..254 "
            "objects, 255 void) or as 0/255 binary masks"
        )
    if full_scale != 255 and present.max() > VOID_LABEL:
        raise ImageProblem(
            f"mask {name} is a 16-bit label image with ids up to {int(present.max())}; "
            f"palette PNGs hold at most {MAX_OBJECT_ID} objects (ids 1..{MAX_OBJECT_ID}, 255 void)"
        )
    return values.astype(np.uint8)


def _only_on_edges(values: np.ndarray) -> bool:
    """Whether every pixel between 0 and 255 lies within 3 pixels of a 255 pixel: the soft edge of a 0/255 mask."""
    full = values == VOID_LABEL
    middle = (values > 0) & (values < VOID_LABEL)
    if not full.any() or not middle.any():
        return False
    import cv2

    near_full = cv2.dilate(full.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    return bool(np.all(near_full[middle]))


def _labels_from_colours(rgb: np.ndarray, name: str) -> np.ndarray:
    colours_present = {tuple(int(c) for c in colour) for colour in np.unique(rgb.reshape(-1, 3), axis=0)}
    if colours_present <= {(0, 0, 0), (255, 255, 255)}:
        return np.asarray(rgb[..., 0] == 255, dtype=np.uint8)  # black and white: one object
    flat = rgb.reshape(-1, 3)
    colours, inverse = np.unique(flat, axis=0, return_inverse=True)
    ids = []
    unknown = []
    for colour in colours:
        key = tuple(int(c) for c in colour)
        index = _PALETTE_LOOKUP.get(key)
        if index is None:
            unknown.append(key)
        ids.append(index if index is not None else 0)
    if unknown:
        shown = ", ".join(map(str, unknown[:4])) + (f" and {len(unknown) - 4} more" if len(unknown) > 4 else "")
        hint = " (anti-aliased or JPEG-compressed edges?)" if len(unknown) > 16 else ""
        raise ImageProblem(
            f"mask {name} is an RGB image with colours that are not DAVIS palette colours: {shown}{hint}; "
            "save masks as palette or label PNGs so every object has an exact id"
        )
    return np.asarray(ids, dtype=np.uint8)[inverse.reshape(-1)].reshape(rgb.shape[:2])


def write_label_mask(path: Path, labels: np.ndarray, *, atomic: bool = False, palette: bool = True) -> None:
    """Write a label map as a palette PNG with the DAVIS palette (or a grayscale PNG).

    With ``atomic``, the file is written to a temporary sibling and renamed, so a reader (or an
    interrupted run) never sees half a PNG.
    """
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    if palette:
        image.putpalette(PALETTE.reshape(-1).tolist())  # turns the grayscale image into a palette one
    path.parent.mkdir(parents=True, exist_ok=True)
    if atomic:
        from sam2tool.atomic import atomic_path

        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
    else:
        image.save(path, format="PNG")


def write_frame(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    """Write RGB pixels as a JPEG without EXIF (so every reader sees the same orientation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(path, format="JPEG", quality=quality)


def object_ids(labels: np.ndarray) -> list[int]:
    """Object ids present in a label map (not background, not void), ascending."""
    return [int(v) for v in np.unique(labels) if v not in (0, VOID_LABEL)]
