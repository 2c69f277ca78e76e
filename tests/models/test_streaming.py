"""The streaming predictor gives the official SAM2VideoPredictor's masks, with bounded memory."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam2tool.config.registry import get_spec
from sam2tool.config.schema import ModelSettings
from sam2tool.data.frames import FolderFrames
from sam2tool.models.build import build_video_predictor, model_overrides
from sam2tool.models.checkpoints import save_official_checkpoint
from tests.conftest import REPO

SIZE = 128


def make_frames(folder: Path, count: int) -> None:
    """Textured squares moving over noise: something for the model to track."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, size=(90, 120, 3), dtype=np.uint8)
    for t in range(count):
        frame = background.copy()
        frame[20:50, 10 + t : 40 + t] = (220, 40, 40)
        frame[55:80, 80 - t // 2 : 105 - t // 2] = (40, 200, 60)
        Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)


@pytest.fixture(scope="module")
def predictors(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from sam2.build_sam import build_sam2_video_predictor

    tmp = tmp_path_factory.mktemp("stream")
    ours = build_video_predictor(ModelSettings(size="micro"), SIZE).model  # the packaged pretrained base
    checkpoint = tmp / "micro.pt"
    save_official_checkpoint(ours, checkpoint)
    spec = get_spec("sam2.1", "micro")
    theirs = build_sam2_video_predictor(
        spec.config_name, str(checkpoint), device="cpu", hydra_overrides_extra=model_overrides(spec, SIZE)
    )
    frames = tmp / "frames"
    make_frames(frames, 34)
    return ours, theirs, frames


def prompt(predictor, state, objects: int, later: bool = False) -> None:  # type: ignore[no-untyped-def]
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, points=np.array([[25.0, 35.0]]), labels=np.array([1]))
    if objects >= 2:
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=2, box=np.array([78.0, 55.0, 106.0, 80.0]))
    if objects >= 3:
        mask = np.zeros((90, 120), dtype=bool)
        mask[20:50, 16:46] = True
        predictor.add_new_mask(state, frame_idx=6 if later else 0, obj_id=3, mask=mask)


@pytest.mark.parametrize("objects", [1, 3])
def test_masks_equal_the_official_predictor(predictors, objects: int) -> None:  # type: ignore[no-untyped-def]
    ours, theirs, frames = predictors
    state_theirs = theirs.init_state(str(frames))
    prompt(theirs, state_theirs, objects)
    reference = {t: masks.clone() for t, _, masks in theirs.propagate_in_video(state_theirs)}

    state_ours = ours.init_state(FolderFrames(frames))
    prompt(ours, state_ours, objects)
    seen = 0
    for t, obj_ids, masks in ours.propagate_in_video(state_ours):
        assert obj_ids == list(range(1, objects + 1))
        torch.testing.assert_close(masks, reference[t], rtol=0, atol=1e-4)
        seen += 1
    assert seen == len(reference) == 34
    assert all((masks > 0).any() for masks in reference.values())  # the comparison is not vacuous


def test_backward_pass_equals_the_official_predictor(predictors) -> None:  # type: ignore[no-untyped-def]
    ours, theirs, frames = predictors
    results = []
    for predictor, source in ((theirs, str(frames)), (ours, FolderFrames(frames))):
        state = predictor.init_state(source)
        mask = np.zeros((90, 120), dtype=bool)
        mask[20:50, 30:60] = True
        predictor.add_new_mask(state, frame_idx=25, obj_id=1, mask=mask)
        masks = {}
        for reverse in (False, True):
            for t, _, m in predictor.propagate_in_video(state, start_frame_idx=25, reverse=reverse):
                masks.setdefault(t, m.clone())
        results.append(masks)
    reference, mine = results
    assert sorted(mine) == sorted(reference) == list(range(34))
    for t in reference:
        torch.testing.assert_close(mine[t], reference[t], rtol=0, atol=1e-4)


def test_memory_stays_bounded(predictors, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ours, _, _ = predictors
    frames = tmp_path / "long"
    make_frames(frames, 90)
    state = ours.init_state(FolderFrames(frames))
    prompt(ours, state, 2)
    window = ours.memory_window()
    for _ in ours.propagate_in_video(state):
        for outputs in state["output_dict_per_obj"].values():
            # a window behind the current frame (plus one until the generator resumes), and a window
            # after the prompted frame (kept for a backward pass that would start there)
            assert len(outputs["non_cond_frame_outputs"]) <= 2 * window + 3
        assert len(state["cached_features"]) <= 1
    assert 2 * window + 3 < 90  # the video is long enough for forgetting to matter


def test_an_object_that_first_appears_later_is_tracked_on_the_cpu(predictors) -> None:  # type: ignore[no-untyped-def]
    # The official predictor fails here outside autocast (bfloat16 memory features reach a float
    # linear layer when an object's only memory is a later conditioning frame).
    ours, _, frames = predictors
    state = ours.init_state(FolderFrames(frames))
    prompt(ours, state, 3, later=True)
    results = {t: masks for t, _, masks in ours.propagate_in_video(state)}
    assert len(results) == 34 and all(torch.isfinite(m).all() for m in results.values())
    assert results[6][2].gt(0).sum() > 0  # object 3 on its prompted frame


def test_importing_the_module_leaves_warnings_and_sam2_alone() -> None:
    code = (
        "import warnings\n"
        "import sam2.sam2_video_predictor as official\n"
        "filters, progress_bar = list(warnings.filters), official.tqdm\n"
        "import sam2tool.models.streaming\n"
        "print('FILTERS', list(warnings.filters) == filters, 'TQDM', official.tqdm is progress_bar)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert "FILTERS True TQDM True" in result.stdout, result.stdout + result.stderr


def test_the_predictor_is_quiet_only_while_it_computes(predictors, capfd: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from sam2 import sam2_video_predictor

    ours, theirs, frames = predictors
    progress_bar, filters = sam2_video_predictor.tqdm, list(warnings.filters)
    heard = {}
    for name, predictor, source in (("ours", ours, FolderFrames(frames)), ("theirs", theirs, str(frames))):
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = predictor.init_state(source)
            prompt(predictor, state, 1)
            for _ in predictor.propagate_in_video(state, max_frame_num_to_track=3):
                assert sam2_video_predictor.tqdm is progress_bar  # between frames, as it was
        heard[name] = (" ".join(str(w.message) for w in caught), capfd.readouterr().err)
    # The official predictor shows a bar and, without sam2's CUDA extension, warns on every frame.
    if importlib.util.find_spec("sam2._C") is None:
        assert "cannot import name '_C' from 'sam2'" in heard["theirs"][0]
    assert "propagate in video" in heard["theirs"][1]
    assert "post-processing" not in heard["ours"][0] and "cannot import name '_C'" not in heard["ours"][0]
    assert "propagate in video" not in heard["ours"][1]
    assert sam2_video_predictor.tqdm is progress_bar and warnings.filters == filters
