"""The Lightning DataModule: training clips and validation videos of prepared data folders.

Training draws from ``dataset.root`` and the folders of ``dataset.mix`` by weight, one folder per
batch (folders of COCO images give one-frame clips). The loader's
:class:`~sam2tool.data.clips.MixedBatchSampler` already shards over ranks; the Trainer must be
created with ``use_distributed_sampler=False`` so that Lightning does not replace it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import torch
from torch.utils.data import DataLoader

from sam2tool.config.schema import DatasetSettings
from sam2tool.data.clips import ClipPlanner, MixedBatchSampler, MixedClipDataset, VideoClipDataset, collate_clips
from sam2tool.data.layout import VideoRecord, load_manifest, read_split
from sam2tool.data.transforms import NO_AUGMENTATION, Augmentations, ClipTransform
from sam2tool.errors import DataError

log = logging.getLogger(__name__)


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


class ResumableLoader(DataLoader[Any]):
    """The training DataLoader, resumable mid-epoch (Lightning saves and restores its state).

    Its state is the epoch and the number of batches the training loop has consumed in it
    (``progress``, set by the DataModule from the Trainer); a restored loader skips exactly those,
    because the batch sampler is a pure function of the seed and the epoch.
    """

    progress: Callable[[], tuple[int, int]] | None = None

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches_done"}`` of the training loop."""
        epoch, done = self.progress() if self.progress is not None else (0, 0)
        return {"epoch": epoch, "batches_done": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Skip the batches already trained on when the saved epoch is iterated again."""
        sampler = self.batch_sampler
        if isinstance(sampler, MixedBatchSampler):
            sampler.resume_at(int(state["epoch"]), int(state["batches_done"]))


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
        self.train_sets: list[VideoClipDataset] = []
        self.weights: list[float] = []
        self.val_videos: list[ValidationVideo] = []

    def setup(self, stage: str | None = None) -> None:
        """Read manifests and splits; build one training dataset per folder."""
        s = self.settings
        sources = [(self.root, s.train_split, s.weight), *((m.root, m.split, m.weight) for m in s.mix)]
        self.train_sets = [self._train_set(root, split) for root, split, _ in sources]
        self.weights = [weight for _, _, weight in sources]
        for dataset in self.train_sets:
            if dataset.unusable:
                log.warning(
                    "%d videos of %s are too short for clips of %d annotated frames (stride %d) and are not "
                    "trained on: %s",
                    len(dataset.unusable),
                    dataset.root,
                    dataset.planner.length,
                    dataset.planner.stride,
                    ", ".join(dataset.unusable[:10]),
                )
        manifest = load_manifest(self.root)
        val_names = read_split(self.root, s.val_split)
        missing = [n for n in val_names if n not in manifest.videos]
        if missing:
            raise DataError(
                f"splits/{s.val_split}.txt lists videos missing from the manifest: {', '.join(missing[:5])}"
            )
        self.val_videos = [ValidationVideo(self.root, n, manifest.videos[n]) for n in val_names]

    def _train_set(self, root: Path, split: str) -> VideoClipDataset:
        s = self.settings
        manifest = load_manifest(root)
        names = read_split(root, split)
        if not names:
            raise DataError(f"{root}/splits/{split}.txt lists no video; nothing to train on")
        images_only = all(manifest.videos[n].kind == "image" for n in names if n in manifest.videos)
        length = 1 if images_only else s.video_clip_length
        planner = ClipPlanner(length, s.max_num_objects, s.frame_stride, s.reverse_prob)
        transform = ClipTransform(s.image_size, augmentations(s))
        return VideoClipDataset(root, manifest.videos, names, planner, transform, self.seed, s.multiplier)

    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled clips, ``dataset.batch_size`` per step, each batch from one folder, sharded over ranks."""
        if not self.train_sets:
            self.setup("fit")
        rank, world_size = self._rank()
        batches = MixedBatchSampler(
            [len(d) for d in self.train_sets],
            self.weights,
            self.settings.batch_size,
            self.seed,
            rank=rank,
            world_size=world_size,
        )
        if len(batches) == 0:
            clips = sum(len(d) for d in self.train_sets)
            raise DataError(
                f"{clips} training clips per epoch are fewer than one batch of {self.settings.batch_size} on each of "
                f"{world_size} devices; lower dataset.batch_size or raise dataset.multiplier"
            )
        workers = self.settings.num_workers
        loader = ResumableLoader(
            MixedClipDataset(self.train_sets),
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=collate_clips,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            worker_init_fn=_worker_init if workers > 0 else None,
            multiprocessing_context="spawn" if workers > 0 else None,
        )
        trainer = getattr(self, "trainer", None)
        if trainer is not None:

            def progress() -> tuple[int, int]:
                return trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed

            loader.progress = progress
        return loader

    def val_dataloader(self) -> DataLoader[Any]:
        """The held-out videos, one per item (frames are streamed by the evaluator)."""
        return DataLoader(self.val_videos, batch_size=None, shuffle=False)  # type: ignore[arg-type]
