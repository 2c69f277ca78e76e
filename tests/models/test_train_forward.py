"""Our training forward equals the official SAM2Train on the same weights, prompts and seeds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sam2tool.config.schema import ModelSettings
from sam2tool.models.build import build_model
from sam2tool.models.train_forward import OFFICIAL_OPTION_NAMES, PromptSimulation, forward_clip, plan_prompts

pytest.importorskip("training.model.sam2")

SIZE = 64
OFFICIAL = "training.model.sam2.SAM2Train"


def clip_batch(frames: int, clips: int, objects_per_clip: int, seed: int = 0) -> SimpleNamespace:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(frames, clips, 3, SIZE, SIZE, generator=generator)
    masks = torch.zeros(frames, clips * objects_per_clip, SIZE, SIZE, dtype=torch.bool)
    for t in range(frames):
        for o in range(clips * objects_per_clip):
            y, x = 8 + 4 * t + 6 * o, 10 + 3 * o
            masks[t, o, y : y + 20, x : x + 16] = True
    clip_index = torch.arange(clips).repeat_interleave(objects_per_clip).int()
    frame_index = torch.arange(frames).int().view(-1, 1).expand(-1, clip_index.numel())
    obj_to_frame_idx = torch.stack([frame_index, clip_index.view(1, -1).expand(frames, -1)], dim=-1)
    return SimpleNamespace(images=images, masks=masks, obj_to_frame_idx=obj_to_frame_idx)


class OfficialInput:
    """The attributes of training.utils.data_utils.BatchedVideoDatapoint that SAM2Train reads."""

    def __init__(self, batch: SimpleNamespace) -> None:
        self.img_batch, self.masks, self.obj_to_frame_idx = batch.images, batch.masks, batch.obj_to_frame_idx
        self.num_frames = batch.images.shape[0]
        self.flat_img_batch = batch.images.transpose(0, 1).flatten(0, 1)
        frame_idx, video_idx = batch.obj_to_frame_idx.unbind(dim=-1)
        self.flat_obj_to_img_idx = video_idx * self.num_frames + frame_idx


SIMULATIONS = {
    "mose-defaults": PromptSimulation(),
    "always-clicks": PromptSimulation(prob_to_use_pt_input=1.0, prob_to_use_box_input=0.0, num_frames_to_correct=3),
    "always-boxes": PromptSimulation(prob_to_use_pt_input=1.0, prob_to_use_box_input=1.0, prob_to_sample_from_gt=0.5),
    "masks-only": PromptSimulation(prob_to_use_pt_input=0.0, num_init_cond_frames=1),
}


@pytest.mark.parametrize("name", list(SIMULATIONS))
@pytest.mark.parametrize("seed", [0, 3])
def test_forward_equals_official_sam2train(name: str, seed: int) -> None:
    sim = SIMULATIONS[name]
    settings = ModelSettings(size="micro", checkpoint=None, drop_path_rate=0.0)
    torch.manual_seed(1)
    ours = build_model(settings, SIZE, load_weights=False).model
    overrides = sim.official_overrides()
    official = build_model(settings, SIZE, target=OFFICIAL, extra_overrides=overrides, load_weights=False)
    official.model.load_state_dict(ours.state_dict())
    ours.eval(), official.model.eval()  # no dropout, so both see the same numbers; prompts still train-mode
    official.model.training = True  # SAM2Train reads self.training for its *_for_train options
    batch = clip_batch(frames=4, clips=2, objects_per_clip=2, seed=seed)

    official.model.rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    expected = official.model(OfficialInput(batch))
    torch.manual_seed(seed)
    got = forward_clip(ours, batch.images, batch.masks, batch.obj_to_frame_idx, sim, np.random.default_rng(seed))

    assert len(got) == len(expected) == 4
    steps = 0
    for g, e in zip(got, expected, strict=True):
        assert set(g) == set(e)
        for key in ("multistep_pred_multimasks_high_res", "multistep_pred_ious", "multistep_object_score_logits"):
            assert len(g[key]) == len(e[key])
            for a, b in zip(g[key], e[key], strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        torch.testing.assert_close(g["pred_masks_high_res"], e["pred_masks_high_res"], rtol=0, atol=1e-5)
        steps += len(g["multistep_pred_ious"])
    if name == "masks-only":
        assert steps == 4
    elif name == "always-clicks":
        assert steps > 4  # correction clicks were simulated


def test_single_images_are_prompted_with_clicks() -> None:
    sim = PromptSimulation(prob_to_use_pt_input=0.0, num_init_cond_frames=2, num_frames_to_correct=2)
    masks = {0: torch.zeros(2, 1, SIZE, SIZE, dtype=torch.bool)}
    masks[0][:, :, 10:30, 10:30] = True
    plan = plan_prompts(sim, masks, 1, np.random.default_rng(0))
    assert plan.use_pt_input and plan.init_cond_frames == [0] and plan.frames_to_correct == [0]
    assert plan.mask_inputs == {} and set(plan.point_inputs) == {0}


def test_plan_covers_conditioning_and_corrected_frames() -> None:
    sim = PromptSimulation(prob_to_use_pt_input=1.0, num_init_cond_frames=3, num_frames_to_correct=4)
    masks = {t: torch.ones(1, 1, SIZE, SIZE, dtype=torch.bool) for t in range(6)}
    counts = set()
    for seed in range(30):
        plan = plan_prompts(sim, masks, 6, np.random.default_rng(seed))
        assert plan.init_cond_frames[0] == 0
        assert set(plan.init_cond_frames) <= set(plan.frames_to_correct)
        assert sorted(plan.init_cond_frames + plan.frames_not_in_init_cond) == list(range(6))
        counts.add(len(plan.init_cond_frames))
    assert counts == {1, 2, 3}


def test_prompt_simulation_is_the_model_settings_and_names_sam2train_options() -> None:
    import inspect

    from training.model.sam2 import SAM2Train

    assert set(PromptSimulation.model_fields) <= set(ModelSettings.model_fields)
    assert PromptSimulation.from_settings(ModelSettings()) == PromptSimulation()
    assert set(OFFICIAL_OPTION_NAMES) == set(PromptSimulation.model_fields)
    options = inspect.signature(SAM2Train.__init__).parameters
    assert [name for name in OFFICIAL_OPTION_NAMES.values() if name not in options] == []
