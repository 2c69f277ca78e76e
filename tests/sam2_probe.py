"""Run a SAM 2 model on two frames (a click on frame 0, tracking on frame 1) and return its outputs.

Exercises the image encoder, prompt encoder, mask decoder, memory encoder and memory attention,
so two models that give equal outputs here have equal weights where it matters.
"""

from __future__ import annotations

import torch


def two_frame_outputs(
    model: torch.nn.Module, image_size: int, seed: int = 0, device: str = "cpu"
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, image_size, image_size, generator=generator).to(device)
    model.eval()
    outputs: list[torch.Tensor] = []
    with torch.no_grad():
        backbone = model.forward_image(images)
        _, feats, pos, feat_sizes = model._prepare_backbone_features(backbone)
        memory: dict[str, dict[int, dict]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        for t in range(2):
            clicks = None
            if t == 0:
                clicks = {
                    "point_coords": torch.tensor([[[image_size / 2, image_size / 3]]], device=device),
                    "point_labels": torch.tensor([[1]], dtype=torch.int32, device=device),
                }
            current = model.track_step(
                frame_idx=t,
                is_init_cond_frame=t == 0,
                current_vision_feats=[x[:, t : t + 1] for x in feats],
                current_vision_pos_embeds=[x[:, t : t + 1] for x in pos],
                feat_sizes=feat_sizes,
                point_inputs=clicks,
                mask_inputs=None,
                output_dict=memory,
                num_frames=2,
            )
            memory["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = current
            outputs += [current["pred_masks"], current["obj_ptr"], current["maskmem_features"]]
    return outputs
