"""A SAM 2 video predictor that streams frames and forgets what it will never attend to again.

The official ``SAM2VideoPredictor.init_state`` decodes every frame up front (3 x S x S float32 per
frame: 12 MiB at 1024 px) and keeps every frame's outputs for the whole video. This predictor keeps
the official API and computation (``init_state`` -> ``add_new_points_or_box`` / ``add_new_mask``
-> ``propagate_in_video``), but:

- frames are decoded, resized and normalised one at a time when the model asks for them, exactly
  as the official loader does (PIL, RGB, resize to S x S, /255, ImageNet mean and std), and only
  the current one is kept;
- after each propagated frame, per-object outputs of frames that SAM 2 can no longer attend to
  are dropped: memory attention reads the conditioning frames, the last ``num_maskmem`` frames
  (times the temporal stride) and object pointers of the last ``max_obj_ptrs_in_encoder`` frames.

Masks and logits are the official predictor's (see the tests); memory stays constant in the
length of the video. While the predictor computes a frame it is quiet (see :func:`_quiet`); the
warning filters and sam2's progress bar are as they were outside it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from sam2 import sam2_video_predictor
from sam2.sam2_video_predictor import SAM2VideoPredictor

from sam2tool.data.frames import FramePictures, FrameSource
from sam2tool.models.forgetting import forget, memory_window


def _no_progress_bar(iterable: Any, *args: Any, **kwargs: Any) -> Any:
    return iterable


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence sam2's per-frame warnings and its progress bar inside the block, then restore both.

    Without sam2's optional CUDA extension the predictor warns on every frame and skips hole
    filling (results are otherwise the same); sam2tool documents this once instead. sam2tool shows
    its own progress bar, so the predictor's tqdm bar (a global of ``sam2.sam2_video_predictor``)
    is silenced too.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"cannot import name '_C' from 'sam2'", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Skipping the post-processing step", category=UserWarning)
        progress_bar = sam2_video_predictor.tqdm
        sam2_video_predictor.tqdm = _no_progress_bar
        try:
            yield
        finally:
            sam2_video_predictor.tqdm = progress_bar


_MEAN = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
_STD = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]


class LazyFrames(FramePictures, Sequence[torch.Tensor]):
    """The ``images`` of an inference state: each frame prepared when asked for, only the last kept."""

    def __init__(self, source: FrameSource, image_size: int, device: torch.device) -> None:
        super().__init__(source)
        self.image_size, self.device = image_size, device
        self._cached: tuple[int, torch.Tensor] | None = None

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        # Exactly the official preprocessing: PIL resize, float64 / 255, then float32 normalisation.
        tensor = torch.from_numpy(self.resized(index, self.image_size)).permute(2, 0, 1).float()
        tensor = ((tensor - _MEAN) / _STD).to(self.device)
        self._cached = (index, tensor)
        return tensor


class StreamingVideoPredictor(SAM2VideoPredictor):  # type: ignore[misc]  # sam2 has no type hints
    """``SAM2VideoPredictor`` with streamed frames and a bounded memory bank (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SAM 2 stores memory features in bfloat16. When an object's only memory is such features
        # (an object prompted on a later frame, tracked before it), nothing promotes them to the
        # model's dtype and memory attention fails outside autocast (e.g. on the CPU). Casting the
        # memory to the queries' dtype is what torch.cat already does whenever object pointers are
        # present, so results are unchanged where the official predictor works.
        attention_forward = self.memory_attention.forward

        def forward(curr: Any, memory: torch.Tensor, curr_pos: Any = None, memory_pos: Any = None, **kw: Any) -> Any:
            dtype = (curr[0] if isinstance(curr, list) else curr).dtype
            memory_pos = memory_pos.to(dtype) if memory_pos is not None else None
            return attention_forward(curr=curr, memory=memory.to(dtype), curr_pos=curr_pos, memory_pos=memory_pos, **kw)

        self.memory_attention.forward = forward

    def init_state(self, frames: FrameSource, offload_state_to_cpu: bool = False) -> dict[str, Any]:
        """Start tracking on ``frames`` without decoding them up front."""
        images = LazyFrames(frames, self.image_size, self.device)
        state: dict[str, Any] = {
            "images": images,
            "num_frames": len(images),
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": offload_state_to_cpu,
            "video_height": images.video_height,
            "video_width": images.video_width,
            "device": self.device,
            "storage_device": torch.device("cpu") if offload_state_to_cpu else self.device,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        self._get_image_feature(state, frame_idx=0, batch_size=1)
        return state

    def memory_window(self) -> int:
        """How many frames back (or ahead, in reverse) a frame's outputs can still be attended to."""
        return memory_window(
            int(self.num_maskmem), int(self.memory_temporal_stride_for_eval), int(self.max_obj_ptrs_in_encoder)
        )

    def propagate_in_video(
        self,
        inference_state: dict[str, Any],
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], torch.Tensor]]:
        """Yield ``(frame_idx, obj_ids, masks at video resolution)`` frame by frame, forgetting as it goes.

        Each frame is computed quietly (:func:`_quiet`); the caller's code between frames is not.
        """
        frames = super().propagate_in_video(inference_state, start_frame_idx, max_frame_num_to_track, reverse)
        try:
            while True:
                with _quiet():
                    step = next(frames, None)
                if step is None:
                    return
                frame_idx, obj_ids, masks = step
                yield frame_idx, obj_ids, masks
                self._forget(inference_state, frame_idx, reverse)
        finally:
            frames.close()

    def _run_single_frame_inference(self, *args: Any, **kwargs: Any) -> Any:
        """The official computation of one frame, quietly (prompts call it as well as propagation)."""
        with _quiet():
            return super()._run_single_frame_inference(*args, **kwargs)

    def _forget(self, state: dict[str, Any], frame_idx: int, reverse: bool) -> None:
        """Drop outputs more than a window behind ``frame_idx`` (:func:`sam2tool.models.forgetting.forget`)."""
        window = self.memory_window()
        per_object = state["output_dict_per_obj"]
        prompted = {t for outputs in per_object.values() for t in outputs["cond_frame_outputs"]}
        for obj_idx, outputs in per_object.items():
            tracked = state["frames_tracked_per_obj"][obj_idx]
            forget(outputs["non_cond_frame_outputs"], tracked, prompted, frame_idx, reverse, window)
