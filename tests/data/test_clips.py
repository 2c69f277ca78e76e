"""Training clips: sampling, alignment of masks and frames under augmentation, determinism."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from sam2tool.config.schema import DatasetSettings
from sam2tool.data.clips import ClipPlanner, MixedBatchSampler, VideoClipDataset, collate_clips
from sam2tool.data.datamodule import ClipDataModule, augmentations
from sam2tool.data.formats.synthetic import SyntheticOptions
from sam2tool.data.images import PALETTE, read_label_mask
from sam2tool.data.layout import VideoRecord, load_manifest
from sam2tool.data.transforms import IMAGENET_MEAN, IMAGENET_STD, NO_AUGMENTATION, Augmentations, ClipTransform
from sam2tool.errors import DataError
from sam2tool.services.prepare_data import PrepareOptions, prepare_data
from tests.data.builders import make_ytvos


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    prepare_data(
        None,
        root,
        PrepareOptions(format="synthetic", format_options=SyntheticOptions(num_videos=4, frames=10, size=64)),
    )
    return root


def settings(root: Path, **values: object) -> DatasetSettings:
    base: dict[str, object] = {"root": root, "image_size": 64, "video_clip_length": 4, "num_workers": 0}
    return DatasetSettings(**{**base, **values})


def unnormalise(images: torch.Tensor) -> np.ndarray:
    x = images * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_masks_stay_aligned_with_frames_under_flip_and_affine() -> None:
    # Frames painted with each object's palette colour: after the transform, the pixels under each
    # returned mask must still have that object's colour (away from edges, bilinear blurs them).
    labels = np.zeros((48, 64), dtype=np.uint8)
    labels[8:30, 6:26] = 1
    labels[20:44, 34:60] = 2
    frames = [PALETTE[labels].copy() for _ in range(3)]
    transform = ClipTransform(96, Augmentations(1.0, 25.0, 20.0, (0.0,) * 3, (0.0,) * 3, 0.0))
    for seed in range(8):
        images, masks = transform(frames, [labels] * 3, [1, 2], np.random.default_rng(seed))
        pixels = unnormalise(images)
        for k, object_id in enumerate((1, 2)):
            inner = torch.nn.functional.max_pool2d((~masks[:, k]).float().unsqueeze(1), 5, 1, 2).squeeze(1) == 0
            assert inner.sum() > 50
            colours = pixels[inner.numpy()]
            close = np.abs(colours.astype(int) - PALETTE[object_id].astype(int)).max(axis=1) <= 2
            # Pixels at the frame border mix with the affine fill; a shifted mask would miss by far more.
            assert close.mean() > 0.99, (seed, object_id, close.mean())


def test_flip_mirrors_frame_and_mask_together() -> None:
    labels = np.zeros((32, 32), dtype=np.uint8)
    labels[4:10, 2:8] = 1
    frame = PALETTE[labels].copy()
    transform = ClipTransform(32, Augmentations(1.0, 0.0, 0.0, (0.0,) * 3, (0.0,) * 3, 0.0))
    images, masks = transform([frame], [labels], [1], np.random.default_rng(0))
    assert torch.equal(masks[0, 0], torch.from_numpy(labels[:, ::-1] == 1))
    assert np.array_equal(unnormalise(images)[0], frame[:, ::-1])


def test_without_augmentation_the_dataset_returns_the_prepared_data(synthetic: Path) -> None:
    manifest = load_manifest(synthetic)
    dataset = VideoClipDataset(
        synthetic, manifest.videos, ["synthetic_001"], ClipPlanner(4, 3), ClipTransform(64, NO_AUGMENTATION)
    )
    clip = dataset[(0, 0)]
    import cv2

    for t, stem in enumerate(clip.plan.frames):
        source = read_label_mask(synthetic / "Annotations/synthetic_001" / f"{stem}.png")
        for k, object_id in enumerate(clip.plan.objects):
            assert torch.equal(clip.masks[t, k], torch.from_numpy(source == object_id))
        bgr = cv2.imread(str(synthetic / "JPEGImages/synthetic_001" / f"{stem}.jpg"))
        assert np.abs(unnormalise(clip.images)[t].astype(int) - bgr[..., ::-1].astype(int)).max() <= 1


def test_clip_objects_are_visible_on_the_first_frame(synthetic: Path) -> None:
    manifest = load_manifest(synthetic)
    planner = ClipPlanner(4, 2, stride=2, reverse_prob=0.5)
    for seed in range(30):
        name = f"synthetic_00{seed % 4}"
        plan = planner.plan(name, manifest.videos[name], np.random.default_rng(seed))
        record = manifest.videos[name]
        assert len(plan.frames) == 4 and 1 <= len(plan.objects) <= 2
        positions = [record.annotated.index(s) for s in plan.frames]
        assert [abs(b - a) for a, b in itertools.pairwise(positions)] == [2, 2, 2]
        for object_id in plan.objects:
            assert plan.frames[0] in record.objects[object_id]


def test_sparse_annotations_sample_annotated_frames_only(tmp_path: Path) -> None:
    source = make_ytvos(tmp_path / "yt", videos=("v",), frames=20, every=5)
    prepare_data(source, tmp_path / "out", PrepareOptions(format="ytvos", val_fraction=0.0))
    record = load_manifest(tmp_path / "out").videos["v"]
    plan = ClipPlanner(3, 2).plan("v", record, np.random.default_rng(0))
    assert set(plan.frames) <= set(record.annotated) == {"00000", "00005", "00010", "00015"}


def test_videos_too_short_are_left_out_and_all_short_is_an_error(synthetic: Path) -> None:
    manifest = load_manifest(synthetic)
    short = VideoRecord(["00000", "00001"], ["00000", "00001"], {1: ["00000"]}, 64, 64, "x")
    records = {**manifest.videos, "short": short}
    dataset = VideoClipDataset(synthetic, records, ["synthetic_000", "short"], ClipPlanner(4, 2), ClipTransform(64))
    assert dataset.videos == ["synthetic_000"] and dataset.unusable == ["short"]
    with pytest.raises(DataError, match=r"lower dataset\.video_clip_length"):
        VideoClipDataset(synthetic, records, ["short"], ClipPlanner(4, 2), ClipTransform(64))


def test_same_seed_epoch_and_index_give_the_same_clip(synthetic: Path) -> None:
    manifest = load_manifest(synthetic)

    def make() -> VideoClipDataset:
        transform = ClipTransform(64, Augmentations())
        return VideoClipDataset(synthetic, manifest.videos, list(manifest.videos), ClipPlanner(4, 2), transform, seed=7)

    a, b = make(), make()
    for key in [(0, 0), (0, 3), (2, 1)]:
        x, y = a[key], b[key]
        assert x.plan == y.plan
        assert torch.equal(x.images, y.images) and torch.equal(x.masks, y.masks)
    assert not torch.equal(a[(0, 1)].images, a[(1, 1)].images)


def test_batch_sampler_is_seeded_and_sharded_over_ranks() -> None:
    whole = MixedBatchSampler([10], [1.0], batch_size=2, seed=1)
    whole.set_epoch(3)
    order = [key for batch in whole for key in batch]
    assert sorted(i for _, _, i in order) == list(range(10))
    assert all(d == 0 and e == 3 for d, e, _ in order)
    assert order == [key for batch in whole for key in batch]  # repeatable
    whole.set_epoch(4)
    assert [key for batch in whole for key in batch] != order
    shards = []
    for rank in range(2):
        sampler = MixedBatchSampler([10], [1.0], batch_size=1, seed=1, rank=rank, world_size=2)
        sampler.set_epoch(3)
        shards.append([i for batch in sampler for _, _, i in batch])
    assert sorted(shards[0] + shards[1]) == list(range(10)) and len(shards[0]) == len(shards[1]) == 5


def test_batch_sampler_mixes_datasets_by_weight_one_dataset_per_batch() -> None:
    sampler = MixedBatchSampler([300, 100], [3.0, 1.0], batch_size=4, seed=0)
    batches = list(sampler)
    assert len(batches) == 100
    assert all(len({d for d, _, _ in batch}) == 1 for batch in batches)
    share = sum(batch[0][0] == 1 for batch in batches) / len(batches)
    assert 0.15 < share < 0.35  # weight 1 of 4


def test_collate_matches_the_official_batch_layout(synthetic: Path) -> None:
    manifest = load_manifest(synthetic)
    dataset = VideoClipDataset(synthetic, manifest.videos, list(manifest.videos), ClipPlanner(4, 3), ClipTransform(64))
    clips = [dataset[(0, 0)], dataset[(0, 1)]]
    batch = collate_clips(clips)
    objects = [len(c.plan.objects) for c in clips]
    assert batch.images.shape == (4, 2, 3, 64, 64)
    assert batch.masks.shape == (4, sum(objects), 64, 64)
    assert batch.obj_to_frame_idx.shape == (4, sum(objects), 2)
    assert batch.obj_to_frame_idx[2, :, 0].tolist() == [2] * sum(objects)
    assert batch.obj_to_frame_idx[0, :, 1].tolist() == [0] * objects[0] + [1] * objects[1]
    assert torch.equal(batch.masks[:, : objects[0]], clips[0].masks)


def test_datamodule_batches_do_not_depend_on_workers(synthetic: Path) -> None:
    batches = []
    for workers in (0, 2):
        module = ClipDataModule(settings(synthetic, num_workers=workers, batch_size=2), seed=3)
        module.setup("fit")
        loader = module.train_dataloader()
        loader.batch_sampler.set_epoch(1)  # type: ignore[union-attr]
        batches.append(next(iter(loader)))
    assert batches[0].videos == batches[1].videos
    assert torch.equal(batches[0].images, batches[1].images)
    assert torch.equal(batches[0].masks, batches[1].masks)


def test_datamodule_errors(tmp_path: Path, synthetic: Path) -> None:
    with pytest.raises(DataError, match=r"dataset\.root is not set"):
        ClipDataModule(DatasetSettings())
    with pytest.raises(DataError, match=r"has no manifest\.json"):
        ClipDataModule(settings(tmp_path)).setup()
    empty = tmp_path / "empty"
    import shutil

    shutil.copytree(synthetic, empty)
    (empty / "splits/train.txt").write_text("")
    with pytest.raises(DataError, match="lists no video; nothing to train on"):
        ClipDataModule(settings(empty)).setup()


def test_augment_switch() -> None:
    assert augmentations(DatasetSettings(augment=False)) == NO_AUGMENTATION
    assert augmentations(DatasetSettings()).degrees == 25.0


def test_mixing_a_coco_folder_gives_one_frame_batches(tmp_path: Path, synthetic: Path) -> None:
    from sam2tool.config.schema import DataSource
    from tests.data.test_formats_coco_sav import make_coco

    coco = tmp_path / "coco_prepared"
    prepare_data(make_coco(tmp_path / "coco"), coco, PrepareOptions(format="coco", val_fraction=0.0))
    module = ClipDataModule(settings(synthetic, batch_size=1, mix=[DataSource(root=coco, weight=1.0)]), seed=0)
    module.setup("fit")
    lengths = {batch.images.shape[0] for batch in module.train_dataloader()}
    assert lengths == {1, 4}
