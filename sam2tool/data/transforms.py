"""Clip augmentations of the official SAM 2.1 fine-tune recipe, fused and consistent across frames.

The recipe applies, in order: horizontal flip, random affine (rotation, shear), resize to a square,
colour jitter (same for all frames), random grayscale, colour jitter (per frame), normalisation.
Here the colour operations run first, on the uint8 frames at their stored size (they act pixel by
pixel, so they commute with the geometry; only the fill colour of pixels the affine brings in from
outside stays unjittered), with OpenCV's saturating uint8 arithmetic as PIL's does. Flip, affine
and resize are then composed into one matrix and applied with a single ``cv2.warpAffine`` per frame
(bilinear for images, nearest for label maps), and normalisation is one in-place multiply-add. All
randomness comes from the generator passed in, so a clip is a pure function of (seed, epoch, index),
whatever the worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Fill of pixels the affine brings in from outside the frame (the recipe's image mean, 0..255).
AFFINE_FILL = (123, 116, 103)


@dataclass(frozen=True)
class Augmentations:
    """Strengths of each augmentation; zeros switch one off.

    Attributes:
        hflip_prob: Probability of flipping the whole clip horizontally.
        degrees: Rotation drawn uniformly from [-degrees, degrees].
        shear: Horizontal shear (degrees) drawn uniformly from [-shear, shear].
        jitter: Brightness, contrast, saturation strengths of the clip-wide colour jitter.
        frame_jitter: The same, drawn anew for every frame.
        grayscale_prob: Probability of turning the whole clip grayscale.

    """

    hflip_prob: float = 0.5
    degrees: float = 25.0
    shear: float = 20.0
    jitter: tuple[float, float, float] = (0.1, 0.03, 0.03)
    frame_jitter: tuple[float, float, float] = (0.1, 0.05, 0.05)
    grayscale_prob: float = 0.05


NO_AUGMENTATION = Augmentations(0.0, 0.0, 0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0)


def geometry_matrix(height: int, width: int, size: int, flip: bool, angle: float, shear: float) -> np.ndarray:
    """2x3 matrix taking source pixel centres to output pixel centres.

    Flip, then rotate by ``angle`` degrees (counter-clockwise) and shear horizontally by ``shear``
    degrees about the frame centre, then resize to ``size`` x ``size``.
    """
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    flip_m = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) if flip else np.eye(3)
    a = math.radians(angle)
    s = math.radians(shear)
    # Rotation (counter-clockwise on screen: y points down) times horizontal shear.
    rotate = np.array([[math.cos(a), math.sin(a), 0.0], [-math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    shear_m = np.array([[1.0, math.tan(s), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    from_centre = np.array([[1.0, 0.0, cx], [0.0, 1.0, cy], [0.0, 0.0, 1.0]])
    sx, sy = size / width, size / height
    resize = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
    matrix: np.ndarray = resize @ from_centre @ rotate @ shear_m @ to_centre @ flip_m
    return matrix[:2]


class ClipTransform:
    """Turns decoded frames and label maps into model-ready tensors.

    Args:
        image_size: Output side in pixels.
        augmentations: What to apply; ``NO_AUGMENTATION`` for evaluation (resize only).

    """

    def __init__(self, image_size: int, augmentations: Augmentations = NO_AUGMENTATION) -> None:
        self.size = image_size
        self.aug = augmentations
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std)
        self.offset = -mean / std

    def __call__(
        self,
        frames: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        object_ids: Sequence[int],
        rng: np.random.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform a clip.

        Args:
            frames: RGB uint8 frames (H, W, 3), all the same size.
            labels: Label maps (H, W) uint8, one per frame.
            object_ids: The objects to return masks for, in order.
            rng: Source of all randomness.

        Returns:
            Images (T, 3, S, S) float32, normalised; masks (T, O, S, S) bool.

        """
        height, width = frames[0].shape[:2]
        aug = self.aug
        flip = bool(rng.random() < aug.hflip_prob)
        angle = float(rng.uniform(-aug.degrees, aug.degrees)) if aug.degrees else 0.0
        shear = float(rng.uniform(-aug.shear, aug.shear)) if aug.shear else 0.0
        matrix = geometry_matrix(height, width, self.size, flip, angle, shear)
        warped_labels = [self._warp_labels(label, matrix) for label in labels]
        if (angle or shear) and not _all_visible(warped_labels[0], object_ids):
            # As the recipe: if the affine pushes an object out of the first frame, skip the affine.
            matrix = geometry_matrix(height, width, self.size, flip, 0.0, 0.0)
            warped_labels = [self._warp_labels(label, matrix) for label in labels]
        coloured = self._colour(list(frames), rng)
        images = torch.from_numpy(np.stack([self._warp_image(frame, matrix) for frame in coloured]))
        ids = torch.tensor(list(object_ids), dtype=torch.uint8).view(1, -1, 1, 1)
        masks = torch.from_numpy(np.stack(warped_labels)).unsqueeze(1) == ids
        # (x / 255 - mean) / std as one multiply-add, in place.
        pixels = images.permute(0, 3, 1, 2).float()
        return pixels.mul_(self.scale).add_(self.offset), masks

    def _warp_image(self, frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            frame,
            matrix,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=AFFINE_FILL,
        )

    def _warp_labels(self, labels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(
            labels,
            matrix,
            (self.size, self.size),
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )

    def _colour(self, frames: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        aug = self.aug
        if any(aug.jitter):
            frames = _jitter(frames, aug.jitter, rng, per_frame=False)
        if aug.grayscale_prob and rng.random() < aug.grayscale_prob:
            frames = [cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for f in frames]
        if any(aug.frame_jitter):
            frames = _jitter(frames, aug.frame_jitter, rng, per_frame=True)
        return frames


def _all_visible(labels: np.ndarray, object_ids: Sequence[int]) -> bool:
    present = set(np.unique(labels).tolist())
    return all(object_id in present for object_id in object_ids)


def _jitter(
    frames: list[np.ndarray], strengths: tuple[float, float, float], rng: np.random.Generator, per_frame: bool
) -> list[np.ndarray]:
    """Brightness, contrast and saturation in random order, as torchvision's ColorJitter on PIL images.

    One set of factors for the whole clip, or (``per_frame``) one per frame.
    """
    order = rng.permutation(3)
    draws = len(frames) if per_frame else 1
    factors = {
        int(op): rng.uniform(max(0.0, 1.0 - strengths[op]), 1.0 + strengths[op], size=draws)
        for op in order
        if strengths[op]
    }
    out = []
    for index, frame in enumerate(frames):
        for op in order:
            if int(op) not in factors:
                continue
            factor = float(factors[int(op)][index if per_frame else 0])
            if op == 0:  # brightness: blend with black
                frame = cv2.convertScaleAbs(frame, alpha=factor)
            elif op == 1:  # contrast: blend with the mean gray level
                mean = float(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).mean())
                frame = cv2.convertScaleAbs(frame, alpha=factor, beta=mean * (1.0 - factor))
            else:  # saturation: blend with the grayscale image
                gray = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
                frame = cv2.addWeighted(frame, factor, gray, 1.0 - factor, 0.0)
        out.append(frame)
    return out
