"""The Lightning DataModule: training clips and validation videos of a prepared data folder.

The training loader uses :class:`~sam2tool.data.clips.EpochSampler`, which already shards over
ranks; the Trainer must be created with ``use_distributed_sampler=False`` so that Lightning does
not replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from torch.utils.data import DataLoader

from sam2tool.config.schema import DatasetSettings
from sam2tool.data.clips import ClipPlanner, EpochSampler, VideoClipDataset, collate_clips
from sam2tool.data.layout import DataError, VideoRecord, load_manifest, read_split
from sam2tool.data.transforms import NO_AUGMENTATION, Augmentations, ClipTransform


def augmentations(settings: DatasetSettings) -> Augmentations:
    """The training augmentations configured in the ``dataset`` section."""
    if not settings.augment:
        return NO_AUGMENTATION
    return Augmentations(
        hflip_prob=settings.hflip_prob,
        degrees=settings.affine_degrees,
        shear=settings.affine_shear,
        jitter=settings.color_jitter,
        frame_jitter=settings.frame_color_jitter,
        grayscale_prob=settings.grayscale_prob,
    )


@dataclass(frozen=True)
class ValidationVideo:
    """A held-out video to evaluate on: where it is and what the manifest says about it."""

    root: Path
    name: str
    record: VideoRecord


def _worker_init(worker_id: int) -> None:
    # Each worker decodes and warps on one thread; parallelism comes from the workers. Workers are
    # spawned, not forked: OpenCV's and OpenMP's thread pools do not survive a fork (a forked
    # worker that touches them can hang), and neither does CUDA.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class ClipDataModule(L.LightningDataModule):
    """Train/val loaders for a folder written by ``sam2tool prepare-data``.

    Args:
        settings: The ``dataset`` section.
        seed: Seed of clip sampling and augmentation (``trainer.seed``).

    """

    def __init__(self, settings: DatasetSettings, seed: int = 0) -> None:
        super().__init__()
        if settings.root is None:
            raise DataError("dataset.root is not set; point it at a folder written by `sam2tool prepare-data`")
        self.settings, self.seed, self.root = settings, seed, settings.root
        self.train_set: VideoClipDataset | None = None
        self.val_videos: list[ValidationVideo] = []

    def setup(self, stage: str | None = None) -> None:
        """Read the manifest and splits; build the training dataset."""
        s = self.settings
        manifest = load_manifest(self.root)
        train_names = read_split(self.root, s.train_split)
        if not train_names:
            raise DataError(f"{self.root}/splits/{s.train_split}.txt lists no video; nothing to train on")
        planner = ClipPlanner(s.video_clip_length, s.max_num_objects, s.frame_stride, s.reverse_prob)
        transform = ClipTransform(s.image_size, augmentations(s))
        self.train_set = VideoClipDataset(
            self.root, manifest.videos, train_names, planner, transform, self.seed, s.multiplier
        )
        val_names = read_split(self.root, s.val_split)
        missing = [n for n in val_names if n not in manifest.videos]
        if missing:
            raise DataError(
                f"splits/{s.val_split}.txt lists videos missing from the manifest: {', '.join(missing[:5])}"
            )
        self.val_videos = [ValidationVideo(self.root, n, manifest.videos[n]) for n in val_names]

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled clips, ``dataset.batch_size`` per step, sharded over ranks."""
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        rank, world_size = self._rank()
        sampler = EpochSampler(len(self.train_set), self.seed, shuffle=True, rank=rank, world_size=world_size)
        workers = self.settings.num_workers
        return DataLoader(
            self.train_set,
            batch_size=self.settings.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_clips,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            drop_last=True,
            worker_init_fn=_worker_init if workers > 0 else None,
            multiprocessing_context="spawn" if workers > 0 else None,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        """The held-out videos, one per item (frames are streamed by the evaluator)."""
        return DataLoader(self.val_videos, batch_size=None, shuffle=False)  # type: ignore[arg-type]
