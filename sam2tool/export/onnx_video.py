"""The graphs of SAM 2 video tracking beyond the image encoder and mask decoder, for ONNX.

:class:`MemoryEncoderGraph` turns the current frame's features and its predicted mask into the
frame's memory (``SAM2Base._encode_new_memory``). Memory attention, which reads those memories,
is :class:`sam2tool.export.onnx_rope.MemoryAttentionGraph`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class MemoryEncoderGraph(nn.Module):
    """One object's memory of one frame, as ``SAM2Base._encode_new_memory`` computes it (eval mode).

    Inputs (batch 1; ``C`` the hidden width, ``S`` the image size, ``g = S / 16``):

    - ``features`` ``[1, C, g, g]``: the frame's lowest-resolution backbone features (without memory);
    - ``mask_logits`` ``[1, 1, S, S]``: the object's predicted mask logits at the model's input size;
    - ``object_score_logits`` ``[1, 1]``: the logit that the object is in the frame;
    - ``binarize`` ``[1]``: 1 when the mask came from clicks or a box on a conditioning frame
      (sam2 then encodes ``mask > 0`` instead of its sigmoid), else 0.

    Outputs: ``memory`` ``[1, Cm, g, g]`` (``Cm`` the memory width; a frame where the object is
    absent gets sam2.1's no-object embedding) and ``memory_pos`` ``[1, Cm, g, g]``, its positional
    encoding. sam2's video predictor stores ``memory`` in bfloat16; the graph returns float32.

    Args:
        model: A ``SAM2Base``.

    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        if model.non_overlap_masks_for_mem_enc:
            raise ValueError("non_overlap_masks_for_mem_enc needs every object at once; it is not supported")
        self.memory_encoder = model.memory_encoder
        self.binarize_from_prompts = bool(model.binarize_mask_from_pts_for_mem_enc)
        self.scale = float(model.sigmoid_scale_for_mem_enc)
        self.bias = float(model.sigmoid_bias_for_mem_enc)
        self.no_obj_embed_spatial = model.no_obj_embed_spatial

    def forward(
        self,
        features: torch.Tensor,
        mask_logits: torch.Tensor,
        object_score_logits: torch.Tensor,
        binarize: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(memory, memory_pos)``."""
        mask = torch.sigmoid(mask_logits)
        if self.binarize_from_prompts:
            mask = torch.where(binarize.reshape(1, 1, 1, 1) > 0.5, (mask_logits > 0).to(mask.dtype), mask)
        mask = mask * self.scale + self.bias
        out = self.memory_encoder(features, mask, skip_mask_sigmoid=True)
        memory: torch.Tensor = out["vision_features"]
        if self.no_obj_embed_spatial is not None:
            absent = 1.0 - (object_score_logits > 0).to(memory.dtype)  # [1, 1]
            memory = memory + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        position: torch.Tensor = out["vision_pos_enc"][0]
        return memory, position.to(memory.dtype)
