"""The training forward pass of SAM 2 with the official prompt simulation.

A port of ``training.model.sam2.SAM2Train`` (Meta's training code) onto a plain ``SAM2Base``:
per clip the conditioning frames are prompted with the ground-truth mask or, with probability
``prob_to_use_pt_input``, with one click or a noisy box; frames chosen for correction then get
``num_correction_pt_per_frame`` clicks sampled from the error of the previous prediction (or, now
and then, from the ground truth). One-frame clips (single images) always use clicks.

Randomness comes from two places, as in the official code: a NumPy generator for the decisions
(passed in, so that the caller derives it from the seed and the step and a resumed run repeats
it exactly) and the global torch generator for click and box sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch
from pydantic import ConfigDict
from sam2.modeling.sam2_utils import get_next_point, sample_box_points
from sam2.utils.misc import concat_points

from sam2tool.config.schema import ModelSettings, PromptSimulationSettings

#: Keys of a frame's outputs that the loss reads (lists with one entry per correction step).
OUTPUT_KEYS = ("multistep_pred_multimasks_high_res", "multistep_pred_ious", "multistep_object_score_logits")


class PromptSimulation(PromptSimulationSettings):
    """How training prompts each clip (the ``*_for_train`` options of ``SAM2Train``).

    Its fields, with their defaults and bounds, are the prompt-simulation keys of the ``model`` section.
    """

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_settings(cls, settings: ModelSettings) -> PromptSimulation:
        """The prompt simulation configured in the ``model`` section."""
        return cls(**{name: getattr(settings, name) for name in PromptSimulationSettings.model_fields})

    def official_overrides(self) -> list[str]:
        """Hydra overrides that give Meta's ``SAM2Train`` this prompt simulation (the reference in tests)."""
        values = {name: getattr(self, name) for name in PromptSimulationSettings.model_fields}
        return [
            f"++model.{OFFICIAL_OPTION_NAMES[name]}={str(value).lower() if isinstance(value, bool) else value}"
            for name, value in values.items()
        ]


#: The option of Meta's ``SAM2Train`` each ``PromptSimulation`` field ports (the fields' ``official`` metadata).
OFFICIAL_OPTION_NAMES: dict[str, str] = {
    name: str(cast(dict[str, Any], info.json_schema_extra)["official"])
    for name, info in PromptSimulationSettings.model_fields.items()
}


@dataclass
class PromptPlan:
    """The prompts of one clip: which frames condition, which get clicks, and the inputs."""

    use_pt_input: bool
    init_cond_frames: list[int]
    frames_not_in_init_cond: list[int]
    frames_to_correct: list[int]
    mask_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    point_inputs: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)


def plan_prompts(
    sim: PromptSimulation, gt_masks: dict[int, torch.Tensor], num_frames: int, rng: np.random.Generator
) -> PromptPlan:
    """Draw the prompts of a clip exactly as ``SAM2Train.prepare_prompt_inputs`` does in training.

    Args:
        sim: The prompt-simulation options.
        gt_masks: Ground truth per frame, (O, 1, H, W) bool.
        num_frames: Frames in the clip.
        rng: Generator of the decisions (same call order as the official code).

    """
    prob_pt, num_correct, num_init = sim.prob_to_use_pt_input, sim.num_frames_to_correct, sim.num_init_cond_frames
    if num_frames == 1:
        # Single images are trained as SAM: always clicks, on the one frame.
        prob_pt, num_correct, num_init = 1.0, 1, 1
    num_init = min(num_init, num_frames)
    num_correct = min(num_correct, num_frames)
    use_pt_input = bool(rng.random() < prob_pt)
    if sim.rand_init_cond_frames and num_init > 1:
        num_init = int(rng.integers(1, num_init, endpoint=True))
    if use_pt_input and sim.rand_frames_to_correct and num_correct > num_init:
        num_correct = int(rng.integers(num_init, num_correct, endpoint=True))
    if num_init == 1:
        init_cond_frames = [0]
    else:
        init_cond_frames = [0, *rng.choice(range(1, num_frames), num_init - 1, replace=False).tolist()]
    plan = PromptPlan(
        use_pt_input,
        init_cond_frames,
        [t for t in range(num_frames) if t not in init_cond_frames],
        [],
    )
    for t in init_cond_frames:
        if not use_pt_input:
            plan.mask_inputs[t] = gt_masks[t]
            continue
        if rng.random() < sim.prob_to_use_box_input:
            points, labels = sample_box_points(gt_masks[t])
        else:
            points, labels = get_next_point(gt_masks=gt_masks[t], pred_masks=None, method="uniform")
        plan.point_inputs[t] = {"point_coords": points, "point_labels": labels}
    if not use_pt_input:
        plan.frames_to_correct = []
    elif num_correct <= num_init:
        plan.frames_to_correct = list(init_cond_frames)
    else:
        extra = rng.choice(plan.frames_not_in_init_cond, num_correct - num_init, replace=False).tolist()
        plan.frames_to_correct = init_cond_frames + extra
    return plan


def forward_clip(
    model: Any,
    images: torch.Tensor,
    masks: torch.Tensor,
    obj_to_frame_idx: torch.Tensor,
    sim: PromptSimulation,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Track a batch of clips with simulated prompts; return each frame's outputs for the loss.

    Args:
        model: A ``SAM2Base`` in training mode.
        images: (T, B, 3, S, S) normalised frames.
        masks: (T, O, S, S) ground truth of the O objects of all clips.
        obj_to_frame_idx: (T, O, 2) (frame index, clip index) of each object.
        sim: The prompt simulation.
        rng: Generator of the prompt decisions.

    Returns:
        One dict per frame with the keys of :data:`OUTPUT_KEYS` (and the selected masks).

    """
    num_frames = images.shape[0]
    flat_images = images.transpose(0, 1).flatten(0, 1)
    frame_index, clip_index = obj_to_frame_idx.long().unbind(dim=-1)
    flat_obj_to_img = clip_index * num_frames + frame_index
    backbone_out = model.forward_image(flat_images)
    _, vision_feats, vision_pos_embeds, feat_sizes = model._prepare_backbone_features(backbone_out)
    gt_masks = {t: masks[t].unsqueeze(1) for t in range(num_frames)}
    plan = plan_prompts(sim, gt_masks, num_frames, rng)

    output_dict: dict[str, dict[int, Any]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    for t in plan.init_cond_frames + plan.frames_not_in_init_cond:
        img_ids = flat_obj_to_img[t]
        out = _track_frame(
            model,
            sim,
            rng,
            frame_idx=t,
            is_init_cond_frame=t in plan.init_cond_frames,
            vision_feats=[x[:, img_ids] for x in vision_feats],
            vision_pos_embeds=[x[:, img_ids] for x in vision_pos_embeds],
            feat_sizes=feat_sizes,
            point_inputs=plan.point_inputs.get(t),
            mask_inputs=plan.mask_inputs.get(t),
            gt_masks=gt_masks[t],
            correct=t in plan.frames_to_correct,
            output_dict=output_dict,
            num_frames=num_frames,
        )
        as_cond = t in plan.init_cond_frames or (sim.add_all_frames_to_correct_as_cond and t in plan.frames_to_correct)
        output_dict["cond_frame_outputs" if as_cond else "non_cond_frame_outputs"][t] = out
    frames = {**output_dict["cond_frame_outputs"], **output_dict["non_cond_frame_outputs"]}
    return [{k: v for k, v in frames[t].items() if k != "obj_ptr"} for t in range(num_frames)]


def _track_frame(
    model: Any,
    sim: PromptSimulation,
    rng: np.random.Generator,
    *,
    frame_idx: int,
    is_init_cond_frame: bool,
    vision_feats: list[torch.Tensor],
    vision_pos_embeds: list[torch.Tensor],
    feat_sizes: list[tuple[int, int]],
    point_inputs: dict[str, torch.Tensor] | None,
    mask_inputs: torch.Tensor | None,
    gt_masks: torch.Tensor,
    correct: bool,
    output_dict: dict[str, dict[int, Any]],
    num_frames: int,
) -> dict[str, Any]:
    """``SAM2Train.track_step``: one frame, then correction clicks, then the memory encoder."""
    out: dict[str, Any]
    out, sam_outputs, high_res_features, pix_feat = model._track_step(
        frame_idx,
        is_init_cond_frame,
        vision_feats,
        vision_pos_embeds,
        feat_sizes,
        point_inputs,
        mask_inputs,
        output_dict,
        num_frames,
        False,
        None,
    )
    low_multi, high_multi, ious, low_masks, high_masks, obj_ptr, scores = sam_outputs
    steps: dict[str, list[Any]] = {
        "multistep_pred_multimasks": [low_multi],
        "multistep_pred_multimasks_high_res": [high_multi],
        "multistep_pred_ious": [ious],
        "multistep_point_inputs": [point_inputs],
        "multistep_object_score_logits": [scores],
    }
    all_low, all_high = [low_masks], [high_masks]
    if correct:
        for _ in range(sim.num_correction_pt_per_frame):
            from_gt = sim.prob_to_sample_from_gt > 0 and rng.random() < sim.prob_to_sample_from_gt
            new_points, new_labels = get_next_point(
                gt_masks=gt_masks, pred_masks=None if from_gt else high_masks > 0, method="uniform"
            )
            point_inputs = concat_points(point_inputs, new_points, new_labels)
            multimask = model._use_multimask(is_init_cond_frame, point_inputs)
            low_multi, high_multi, ious, low_masks, high_masks, obj_ptr, scores = model._forward_sam_heads(
                backbone_features=pix_feat,
                point_inputs=point_inputs,
                mask_inputs=low_masks,
                high_res_features=high_res_features,
                multimask_output=multimask,
            )
            for key, value in zip(steps, (low_multi, high_multi, ious, point_inputs, scores), strict=True):
                steps[key].append(value)
            all_low.append(low_masks)
            all_high.append(high_masks)
    out.update(steps)
    out["multistep_pred_masks"] = torch.cat(all_low, dim=1)
    out["multistep_pred_masks_high_res"] = torch.cat(all_high, dim=1)
    out["pred_masks"], out["pred_masks_high_res"], out["obj_ptr"] = low_masks, high_masks, obj_ptr
    model._encode_memory_in_output(vision_feats, feat_sizes, point_inputs, True, high_masks, scores, out)
    return out


def enable_activation_checkpointing(model: torch.nn.Module) -> int:
    """Recompute each Hiera block's activations in the backward pass; returns the blocks wrapped."""
    import functools

    from torch.utils.checkpoint import checkpoint

    blocks = getattr(getattr(getattr(model, "image_encoder", None), "trunk", None), "blocks", None)
    if blocks is None:
        return 0
    for block in blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
    return len(blocks)
