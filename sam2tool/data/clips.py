"""Training clips from the canonical layout: which frames and objects, then pixels and masks.

A clip is ``video_clip_length`` annotated frames taken every ``frame_stride`` annotated frames
(optionally in reverse), with up to ``max_num_objects`` objects chosen among those visible on its
first frame. Clips are sampled among annotated frames only, as the official recipe does for
sparsely annotated data (YouTube-VOS annotates every 5th frame); unannotated frames serve
inference. Every random choice comes from ``numpy.random.default_rng([seed, epoch, index])``, so
the sample at an index is the same in any worker and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sam2tool.data.images import read_label_mask
from sam2tool.data.layout import FRAME_SUFFIX, FRAMES_DIR, MASK_SUFFIX, MASKS_DIR, VideoRecord
from sam2tool.data.transforms import ClipTransform
from sam2tool.errors import DataError


@dataclass(frozen=True)
class ClipPlan:
    """The frames (file stems, in clip order) and object ids of one clip."""

    video: str
    frames: tuple[str, ...]
    objects: tuple[int, ...]


class ClipPlanner:
    """Chooses clips from a video's annotated frames.

    Args:
        clip_length: Frames per clip.
        max_objects: At most this many objects per clip.
        stride: Take every ``stride``-th annotated frame.
        reverse_prob: Probability of playing the clip backwards.

    """

    def __init__(self, clip_length: int, max_objects: int, stride: int = 1, reverse_prob: float = 0.0) -> None:
        self.length, self.max_objects, self.stride, self.reverse_prob = clip_length, max_objects, stride, reverse_prob

    def _span(self) -> int:
        return (self.length - 1) * self.stride + 1

    def starts(self, record: VideoRecord) -> tuple[list[int], list[int]]:
        """Start positions (in ``record.annotated``) of forward and of reversed clips.

        Only clips whose first frame (the last one when reversed) shows an object count.
        """
        visible = _visible_by_frame(record)
        count = len(record.annotated) - self._span() + 1
        forward = [i for i in range(max(count, 0)) if visible.get(record.annotated[i])]
        backward = [i for i in range(max(count, 0)) if visible.get(record.annotated[i + self._span() - 1])]
        return forward, backward

    def usable(self, record: VideoRecord) -> bool:
        """Whether at least one clip can be drawn from ``record``."""
        forward, backward = self.starts(record)
        return bool(forward or (self.reverse_prob > 0 and backward))

    def plan(self, name: str, record: VideoRecord, rng: np.random.Generator) -> ClipPlan:
        """Draw one clip of ``record``."""
        forward, backward = self.starts(record)
        reverse = bool(backward) and (not forward or rng.random() < self.reverse_prob)
        start = int(rng.choice(backward if reverse else forward))
        stems = record.annotated[start : start + self._span() : self.stride]
        if reverse:
            stems = stems[::-1]
        visible = sorted(_visible_by_frame(record)[stems[0]])
        count = min(len(visible), self.max_objects)
        chosen = sorted(int(i) for i in rng.choice(visible, size=count, replace=False))
        return ClipPlan(name, tuple(stems), tuple(chosen))


def _visible_by_frame(record: VideoRecord) -> dict[str, set[int]]:
    visible: dict[str, set[int]] = {}
    for object_id, stems in record.objects.items():
        for stem in stems:
            visible.setdefault(stem, set()).add(object_id)
    return visible


@dataclass
class Clip:
    """One transformed clip: images (T, 3, S, S), masks (T, O, S, S) and what they are."""

    images: torch.Tensor
    masks: torch.Tensor
    plan: ClipPlan


class VideoClipDataset(Dataset[Clip]):
    """Clips of the videos of one split of a prepared data folder.

    Indexed by ``(epoch, index)``; ``index`` picks the video (each appears ``multiplier`` times per
    epoch) and, with the seed and epoch, seeds every random choice.
    """

    def __init__(
        self,
        root: Path,
        records: dict[str, VideoRecord],
        names: Sequence[str],
        planner: ClipPlanner,
        transform: ClipTransform,
        seed: int = 0,
        multiplier: int = 1,
    ) -> None:
        self.root, self.records, self.planner, self.transform, self.seed = root, records, planner, transform, seed
        missing = [n for n in names if n not in records]
        if missing:
            raise DataError(f"the split lists videos that are not in {root}/manifest.json: {', '.join(missing[:5])}")
        self.videos = [n for n in names if planner.usable(records[n])]
        self.unusable = [n for n in names if n not in self.videos]
        if not self.videos:
            raise DataError(
                f"no video of {root} has {planner.length} annotated frames with an object on the first; "
                "lower dataset.video_clip_length or dataset.frame_stride"
            )
        self.multiplier = multiplier

    def __len__(self) -> int:
        return len(self.videos) * self.multiplier

    def __getitem__(self, key: tuple[int, int] | int) -> Clip:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        name = self.videos[index % len(self.videos)]
        plan = self.planner.plan(name, self.records[name], rng)
        frames = [self._frame(name, stem) for stem in plan.frames]
        labels = [read_label_mask(self.root / MASKS_DIR / name / f"{stem}{MASK_SUFFIX}") for stem in plan.frames]
        images, masks = self.transform(frames, labels, plan.objects, rng)
        return Clip(images, masks, plan)

    def _frame(self, name: str, stem: str) -> np.ndarray:
        path = self.root / FRAMES_DIR / name / f"{stem}{FRAME_SUFFIX}"
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"cannot read frame {path}; run `sam2tool prepare-data` again")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: What the batch sampler yields per sample: (dataset index, epoch, sample index).
SampleKey = tuple[int, int, int]


class MixedClipDataset(Dataset[Clip]):
    """Several clip datasets behind one index ``(dataset, epoch, index)``."""

    def __init__(self, datasets: Sequence[VideoClipDataset]) -> None:
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key: SampleKey) -> Clip:
        dataset, epoch, index = key
        return self.datasets[dataset][(epoch, index)]


class MixedBatchSampler(Sampler[list[SampleKey]]):
    """Batches drawn from several datasets by weight, each batch from one dataset.

    A batch never mixes datasets (a video clip and a single image have different lengths). The
    epoch has ``sum(sizes) // batch_size`` batches in all; each batch's dataset is drawn with
    probability proportional to its weight, and takes the next ``batch_size`` samples of that
    dataset's permutation (cycling when exhausted). Batches are dealt to ranks in turn. Everything
    is a function of ``(seed, epoch)``, so a resumed run can skip exactly the batches already seen;
    Lightning calls :meth:`set_epoch` at the start of every epoch.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if len(sizes) != len(weights) or not sizes or min(sizes) < 1:
            raise ValueError("every dataset needs at least one sample and a weight")
        self.sizes, self.batch_size, self.seed, self.shuffle = list(sizes), batch_size, seed, shuffle
        total = float(sum(weights))
        self.probabilities = [w / total for w in weights]
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the batches of ``epoch``."""
        self.epoch = epoch

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Skip the first ``batches_done`` batches of this rank the next time ``epoch`` is iterated."""
        self._resume = (epoch, batches_done)

    def __len__(self) -> int:
        return (sum(self.sizes) // self.batch_size) // self.world_size

    def _order(self, dataset: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.sizes[dataset])
        return np.random.default_rng([self.seed, self.epoch, dataset, 0x5A3]).permutation(self.sizes[dataset])

    def __iter__(self) -> Iterator[list[SampleKey]]:
        batches = len(self) * self.world_size
        choice = np.random.default_rng([self.seed, self.epoch, 0xB47])
        picks = (
            choice.choice(len(self.sizes), size=batches, p=self.probabilities)
            if len(self.sizes) > 1
            else np.zeros(batches, dtype=int)
        )
        orders = [self._order(d) for d in range(len(self.sizes))]
        cursors = [0] * len(self.sizes)
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1]
        self._resume = None
        own = 0
        for number, dataset in enumerate(picks.tolist()):
            order, start = orders[dataset], cursors[dataset]
            indices = [int(order[(start + k) % len(order)]) for k in range(self.batch_size)]
            cursors[dataset] = start + self.batch_size
            if number % self.world_size == self.rank:
                own += 1
                if own > skip:
                    yield [(dataset, self.epoch, index) for index in indices]


@dataclass
class ClipBatch:
    """Clips stacked for the training step (the layout of SAM 2's ``BatchedVideoDatapoint``).

    Attributes:
        images: (T, B, 3, S, S) float32.
        masks: (T, O, S, S) bool, O = objects of all clips of the batch.
        obj_to_frame_idx: (T, O, 2) int32: for each object, (frame index, clip index in the batch).
        object_ids: (O,) the objects' ids in their videos.
        videos: Video name of each clip.
        frames: Frame stems of each clip.

    """

    images: torch.Tensor
    masks: torch.Tensor
    obj_to_frame_idx: torch.Tensor
    object_ids: torch.Tensor
    videos: list[str]
    frames: list[tuple[str, ...]]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> ClipBatch:
        """The batch on ``device``."""
        return ClipBatch(
            self.images.to(device, non_blocking=non_blocking),
            self.masks.to(device, non_blocking=non_blocking),
            self.obj_to_frame_idx.to(device, non_blocking=non_blocking),
            self.object_ids.to(device, non_blocking=non_blocking),
            self.videos,
            self.frames,
        )

    def pin_memory(self) -> ClipBatch:
        """Pinned copies, for fast host-to-GPU transfer (called by the DataLoader)."""
        return ClipBatch(
            self.images.pin_memory(),
            self.masks.pin_memory(),
            self.obj_to_frame_idx,
            self.object_ids,
            self.videos,
            self.frames,
        )


def collate_clips(clips: Sequence[Clip]) -> ClipBatch:
    """Stack clips of equal length into a :class:`ClipBatch`."""
    lengths = {clip.images.shape[0] for clip in clips}
    if len(lengths) != 1:
        raise ValueError(f"clips of a batch must have the same length, got {sorted(lengths)}")
    (length,) = lengths
    images = torch.stack([clip.images for clip in clips], dim=1)
    masks = torch.cat([clip.masks for clip in clips], dim=1)
    clip_index = torch.cat([torch.full((clip.masks.shape[1],), b, dtype=torch.int32) for b, clip in enumerate(clips)])
    frame_index = torch.arange(length, dtype=torch.int32).view(-1, 1).expand(-1, clip_index.numel())
    obj_to_frame_idx = torch.stack([frame_index, clip_index.view(1, -1).expand(length, -1)], dim=-1)
    object_ids = torch.tensor([i for clip in clips for i in clip.plan.objects], dtype=torch.int64)
    return ClipBatch(
        images,
        masks,
        obj_to_frame_idx.contiguous(),
        object_ids,
        [c.plan.video for c in clips],
        [c.plan.frames for c in clips],
    )
