"""The SAM 2 training loss: focal + dice on masks, L1 (or MSE) on predicted IoUs, object scores.

The same quantities as the official ``MultiStepMultiMasksAndIous`` (a test compares them on
identical inputs), with sam2tool's names: ``loss`` (the weighted total), ``loss_bce`` (the focal
mask term), ``loss_dice``, ``loss_iou`` and ``loss_class``.

For every frame and every correction step, each object's masks are scored; with several masks
(multimask output), only the one with the lowest weighted focal + dice loss is back-propagated,
and the IoU head is supervised on all of them or on that one (``supervise_all_iou``). Mask and
IoU terms count only for objects present in the ground truth. Every term is divided by the number
of objects, averaged over data-parallel ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sam2tool.config.schema import LossSettings

#: Keys of the per-frame outputs the loss reads (lists over correction steps).
MASKS_KEY = "multistep_pred_multimasks_high_res"
IOUS_KEY = "multistep_pred_ious"
OBJECT_SCORES_KEY = "multistep_object_score_logits"


def focal_loss(logits: Tensor, targets: Tensor, alpha: float, gamma: float) -> Tensor:
    """Sigmoid focal loss per element (RetinaNet); ``alpha < 0`` disables class weighting."""
    probability = logits.sigmoid()
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probability * targets + (1 - probability) * (1 - targets)
    loss = loss * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_per_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """``1 - (2|P.T| + 1) / (|P| + |T| + 1)`` for masks (N, M, H, W) -> (N, M)."""
    probability = logits.sigmoid().flatten(2)
    flat_targets = targets.flatten(2)
    overlap = 2 * (probability * flat_targets).sum(-1)
    return 1 - (overlap + 1) / (probability.sum(-1) + flat_targets.sum(-1) + 1)


def iou_per_mask(logits: Tensor, targets: Tensor) -> Tensor:
    """IoU of the thresholded masks (N, M, H, W) with the targets -> (N, M); 0 for two empty masks."""
    predicted, truth = logits.flatten(2) > 0, targets.flatten(2) > 0
    intersection = (predicted & truth).sum(-1).float()
    union = (predicted | truth).sum(-1).float()
    return intersection / union.clamp(min=1.0)


def objects_across_ranks(count: int, device: torch.device) -> float | Tensor:
    """Objects per rank, averaged over data-parallel ranks, at least 1.

    One process: a Python number. Several: a tensor on ``device`` (reading it back would make the
    host wait for the GPU at every step; dividing by it does not).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return max(float(count), 1.0)
    total = torch.tensor(float(count), device=device)
    torch.distributed.all_reduce(total)
    return (total / torch.distributed.get_world_size()).clamp(min=1.0)


class SAM2Loss(torch.nn.Module):
    """The loss of SAM 2 training, configured by the ``loss`` section.

    Args:
        settings: Weights and focal parameters.
        pred_obj_scores: The model predicts object scores (every SAM 2.1 config does).
        focal_alpha_obj_score: Alpha of the object-score focal loss (-1: none, as the recipe).
        focal_gamma_obj_score: Gamma of the object-score focal loss (0: plain BCE, as the recipe).

    """

    def __init__(
        self,
        settings: LossSettings,
        pred_obj_scores: bool = True,
        focal_alpha_obj_score: float = -1.0,
        focal_gamma_obj_score: float = 0.0,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.pred_obj_scores = pred_obj_scores
        self.focal_alpha_obj_score, self.focal_gamma_obj_score = focal_alpha_obj_score, focal_gamma_obj_score
        self.weights = {
            "loss_bce": settings.weight_mask,
            "loss_dice": settings.weight_dice,
            "loss_iou": settings.weight_iou,
            "loss_class": settings.weight_class,
        }

    def forward(self, frame_outputs: Sequence[Mapping[str, Sequence[Tensor]]], targets: Tensor) -> dict[str, Tensor]:
        """Loss terms summed over frames and steps, and their weighted total ``loss``.

        Args:
            frame_outputs: One dict per frame with the lists ``multistep_pred_multimasks_high_res``
                (N, M, H, W), ``multistep_pred_ious`` (N, M) and ``multistep_object_score_logits``
                (N, 1), one entry per correction step.
            targets: Ground-truth masks (T, N, H, W).

        """
        if len(frame_outputs) != len(targets):
            raise ValueError(f"{len(frame_outputs)} frames of outputs but {len(targets)} frames of targets")
        objects = objects_across_ranks(targets.shape[1], targets.device)
        zero = targets.new_zeros(())
        terms = {key: zero for key in self.weights}
        for outputs, frame_targets in zip(frame_outputs, targets, strict=True):
            target_masks = frame_targets.unsqueeze(1).float()
            for masks, ious, scores in zip(
                outputs[MASKS_KEY], outputs[IOUS_KEY], outputs[OBJECT_SCORES_KEY], strict=True
            ):
                for key, value in self._step(masks, target_masks, ious, scores, objects).items():
                    terms[key] = terms[key] + value
        total = zero
        for key, weight in self.weights.items():
            if weight:
                total = total + weight * terms[key]
        return {"loss": total, **terms}

    def _step(
        self, masks: Tensor, targets: Tensor, ious: Tensor, scores: Tensor, objects: float | Tensor
    ) -> dict[str, Tensor]:
        s = self.settings
        targets = targets.expand_as(masks)
        focal = focal_loss(masks, targets, s.focal_alpha, s.focal_gamma).flatten(2).mean(-1) / objects
        dice = dice_per_mask(masks, targets) / objects
        iou_error = iou_per_mask(masks, targets)
        iou_terms = (
            F.l1_loss(ious, iou_error, reduction="none")
            if s.iou_use_l1_loss
            else F.mse_loss(ious, iou_error, reduction="none")
        ) / objects
        if self.pred_obj_scores:
            present = (targets[:, 0] > 0).flatten(1).any(dim=-1, keepdim=True).float()
            loss_class = focal_loss(scores, present, self.focal_alpha_obj_score, self.focal_gamma_obj_score)
            loss_class = loss_class.mean(1).sum() / objects
        else:
            present = torch.ones(masks.shape[0], 1, dtype=masks.dtype, device=masks.device)
            loss_class = masks.new_zeros(())
        if masks.shape[1] > 1:
            # Back-propagate only the mask that fits best (lowest weighted focal + dice).
            best = torch.argmin(focal * s.weight_mask + dice * s.weight_dice, dim=-1)
            rows = torch.arange(masks.shape[0], device=masks.device)
            focal, dice = focal[rows, best].unsqueeze(1), dice[rows, best].unsqueeze(1)
            iou_terms = iou_terms.mean(-1, keepdim=True) if s.supervise_all_iou else iou_terms[rows, best].unsqueeze(1)
        return {
            "loss_bce": (focal * present).sum(),
            "loss_dice": (dice * present).sum(),
            "loss_iou": (iou_terms * present).sum(),
            "loss_class": loss_class,
        }
