"""Our loss equals the official training.loss_fns.MultiStepMultiMasksAndIous on identical inputs."""

from __future__ import annotations

import pytest
import torch

from sam2tool.config.schema import LossSettings
from sam2tool.training.loss import IOUS_KEY, MASKS_KEY, OBJECT_SCORES_KEY, SAM2Loss

loss_fns = pytest.importorskip("training.loss_fns")


def random_outputs(frames: int, objects: int, size: int, seed: int) -> tuple[list[dict], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.rand(frames, objects, size, size, generator=generator) > 0.7
    targets[:, 0] = False  # an object absent from every frame
    outputs = []
    for t in range(frames):
        steps = 2 if t == 0 else 1
        masks = [
            torch.randn(objects, 3 if (t == 0 and s == 0) else 1, size, size, generator=generator) * 3
            for s in range(steps)
        ]
        outputs.append(
            {
                MASKS_KEY: [m.requires_grad_() for m in masks],
                IOUS_KEY: [torch.rand(objects, m.shape[1], generator=generator) for m in masks],
                OBJECT_SCORES_KEY: [torch.randn(objects, 1, generator=generator) for _ in masks],
            }
        )
    return outputs, targets


@pytest.mark.parametrize("supervise_all_iou", [True, False])
@pytest.mark.parametrize("l1", [True, False])
def test_equal_to_the_official_loss(supervise_all_iou: bool, l1: bool) -> None:
    settings = LossSettings(supervise_all_iou=supervise_all_iou, iou_use_l1_loss=l1)
    official = loss_fns.MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0},
        focal_alpha=0.25,
        focal_gamma=2.0,
        supervise_all_iou=supervise_all_iou,
        iou_use_l1_loss=l1,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
    for seed in range(3):
        outputs, targets = random_outputs(frames=4, objects=3, size=16, seed=seed)
        theirs = official(outputs, targets)
        ours = SAM2Loss(settings)(outputs, targets)
        names = {"loss_bce": "loss_mask", "loss_dice": "loss_dice", "loss_iou": "loss_iou", "loss_class": "loss_class"}
        for mine, reference in names.items():
            assert abs(float(ours[mine].detach()) - float(theirs[reference].detach())) < 1e-6, mine
        assert abs(float(ours["loss"].detach()) - float(theirs["core_loss"].detach())) < 1e-5
        grads_theirs = torch.autograd.grad(theirs["core_loss"], [m for o in outputs for m in o[MASKS_KEY]])
        grads_ours = torch.autograd.grad(ours["loss"], [m for o in outputs for m in o[MASKS_KEY]])
        for a, b in zip(grads_ours, grads_theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_weights_come_from_the_settings() -> None:
    outputs, targets = random_outputs(frames=2, objects=2, size=8, seed=0)
    base = SAM2Loss(LossSettings())(outputs, targets)
    no_dice = SAM2Loss(LossSettings(weight_dice=0.0))(outputs, targets)
    assert float(no_dice["loss"].detach()) < float(base["loss"].detach())
    with pytest.raises(ValueError, match="2 frames of outputs but 3 frames of targets"):
        SAM2Loss(LossSettings())(outputs, torch.zeros(3, 2, 8, 8))
