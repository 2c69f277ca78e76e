"""SAM 2 video tracking with onnxruntime and numpy only: the PyTorch video predictor, step for step.

:class:`OnnxVideoPredictor` has the API of ``sam2.sam2_video_predictor.SAM2VideoPredictor`` (and
of sam2tool's streaming predictor): ``init_state`` -> ``add_new_points_or_box`` / ``add_new_mask``
-> ``propagate_in_video``, which yields each frame's per-object mask logits at video resolution.
It runs the graphs of an ONNX export (:mod:`sam2tool.models.onnx_bundle`) and does in numpy what
sam2 does around its modules:

- which memories a frame attends to: every conditioning (prompted) frame, the frames
  ``1 .. num_maskmem - 1`` before it (after it, tracking backwards) with sam2's temporal
  stride, and the object pointers of up to ``max_obj_ptrs_in_encoder`` frames, signed and
  normalised as sam2.1 does (``SAM2Base._prepare_memory_conditioned_features``);
- memories stored in bfloat16, as sam2's predictor stores them (kept as 16-bit integers);
- clicks scaled to the model's input size in float32, mask prompts resized with antialiasing and
  thresholded at 0.5, low-resolution logits resized bilinearly (:mod:`sam2tool.data.resize`);
- prompts become memories only when propagation starts (``propagate_in_video_preflight``);
- outputs of frames no memory can reach again are dropped after each frame, as the streaming
  predictor drops them, so memory stays constant in the length of the video. (Which frames were
  tracked is forgotten with them: a prompt added later on such a frame starts the object afresh
  there, where sam2, which keeps everything, would take it as a correction.)

sam2's optional hole filling (``fill_hole_area``) needs its CUDA extension and is skipped on the
CPU by the PyTorch predictor too; neither backend applies it. This module never imports torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2tool.data.frames import FramePictures, FrameSource
from sam2tool.data.resize import resize
from sam2tool.errors import UsageError
from sam2tool.models.forgetting import forget, memory_window
from sam2tool.models.onnx_bundle import OnnxBundle

#: The image encoder's outputs, in the order the tracker asks for them.
ENCODER_OUTPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1", "vision_features", "vision_pos_enc")
#: sam2 clamps earlier logits to this range before feeding them back with new clicks.
_LOGIT_CLAMP = 32.0


def to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounding to nearest even as ``torch.Tensor.to(torch.bfloat16)``."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    result: np.ndarray = np.where(np.isnan(values), np.uint32(0x7FC0), rounded).astype(np.uint16)
    return result


def from_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32 (exact)."""
    values: np.ndarray = (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return values


@dataclass
class FrameOutput:
    """One object's result on one frame: what later frames read, and its mask.

    Attributes:
        pred_masks: ``[1, 1, S/4, S/4]`` low-resolution mask logits.
        pointer: ``[1, C]`` the object pointer.
        score: ``[1, 1]`` the object score logit.
        memory: ``[1, Cm, S/16, S/16]`` the spatial memory as bfloat16 bits, once encoded.

    """

    pred_masks: np.ndarray
    pointer: np.ndarray
    score: np.ndarray
    memory: np.ndarray | None = None


@dataclass
class ObjectState:
    """One object's prompts and outputs (sam2's per-object dictionaries)."""

    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse


class OnnxVideoPredictor:
    """Track objects through a video with the graphs of an ONNX export (see the module doc).

    Args:
        bundle: The opened export folder.

    """

    def __init__(self, bundle: OnnxBundle) -> None:
        self.bundle = bundle
        self.sessions = bundle.sessions
        self.image_size = bundle.image_size
        settings = bundle.tracking
        self.num_maskmem = int(settings["num_maskmem"])
        self.max_obj_ptrs_in_encoder = int(settings["max_obj_ptrs_in_encoder"])
        self.memory_temporal_stride = max(int(settings["memory_temporal_stride_for_eval"]), 1)
        self.max_cond_frames_in_attn = int(settings["max_cond_frames_in_attn"])
        self.only_past_pointers = bool(settings["only_obj_ptrs_in_the_past_for_eval"])
        self.signed_pointer_positions = bool(settings["use_signed_tpos_enc_to_obj_ptrs"])
        self.multimask_output_in_sam = bool(settings["multimask_output_in_sam"])
        self.multimask_output_for_tracking = bool(settings["multimask_output_for_tracking"])
        self.multimask_points = (int(settings["multimask_min_pt_num"]), int(settings["multimask_max_pt_num"]))
        self._memory_pos: np.ndarray | None = None

    # -- the predictor's API --------------------------------------------------------------------

    def init_state(self, frames: FrameSource, offload_state_to_cpu: bool = False) -> dict[str, Any]:
        """Start tracking on ``frames`` (read one at a time; the state always lives in host memory)."""
        pictures = FramePictures(frames)
        return {
            "images": pictures,
            "num_frames": len(pictures),
            "video_height": pictures.video_height,
            "video_width": pictures.video_width,
            "objects": {},
            "features": None,
        }

    def add_new_points_or_box(
        self,
        state: dict[str, Any],
        frame_idx: int,
        obj_id: int,
        points: Any = None,
        labels: Any = None,
        clear_old_points: bool = True,
        box: Any = None,
    ) -> tuple[int, list[int], np.ndarray]:
        """Clicks (label 1 object, 0 background) and/or a box in video pixels for ``obj_id`` on ``frame_idx``.

        Returns ``(frame_idx, obj_ids, masks)`` with every object's logits on that frame at video
        resolution, as sam2 does.
        """
        if (points is None) != (labels is None):
            raise UsageError("points and labels must be given together")
        if points is None and box is None:
            raise UsageError("give points or a box")
        if box is None and points is not None and len(points) == 0:
            raise UsageError("give at least one point, or a box")
        obj = self._object(state, obj_id)
        coords = np.zeros((0, 2), dtype=np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
        classes = np.zeros(0, dtype=np.int32) if labels is None else np.asarray(labels, np.int32).reshape(-1)
        if box is not None:
            if not clear_old_points:
                raise UsageError("a box replaces earlier clicks; pass clear_old_points=True")
            coords = np.concatenate([np.asarray(box, np.float32).reshape(2, 2), coords])
            classes = np.concatenate([np.array([2, 3], np.int32), classes])
        # sam2: points / [W, H] * S, in float32.
        size = np.array([state["video_width"], state["video_height"]], dtype=np.float32)
        coords = coords / size * np.float32(self.image_size)
        if not clear_old_points and frame_idx in obj.points:
            old_coords, old_classes = obj.points[frame_idx]
            coords, classes = np.concatenate([old_coords, coords]), np.concatenate([old_classes, classes])
        obj.points[frame_idx] = (coords, classes)
        is_init, reverse, temp = self._pending(obj, frame_idx)
        previous = temp.get(frame_idx) or obj.cond.get(frame_idx) or obj.non_cond.get(frame_idx)
        earlier = None if previous is None else np.clip(previous.pred_masks, -_LOGIT_CLAMP, _LOGIT_CLAMP)
        temp[frame_idx] = self._track_step(
            state, obj, frame_idx, is_init, (coords, classes), None, reverse, run_memory=False, earlier=earlier
        )
        return frame_idx, list(state["objects"]), self._video_masks(state, frame_idx, is_init)

    def add_new_mask(
        self, state: dict[str, Any], frame_idx: int, obj_id: int, mask: Any
    ) -> tuple[int, list[int], np.ndarray]:
        """A binary mask ``[H, W]`` for ``obj_id`` on ``frame_idx`` (resized to the model with antialiasing)."""
        obj = self._object(state, obj_id)
        binary = np.asarray(mask, dtype=bool).astype(np.float32)[None, None]
        if binary.shape[-2:] != (self.image_size, self.image_size):
            resized = resize(binary, self.image_size, self.image_size, antialias=True)
            binary = (resized >= 0.5).astype(np.float32)
        obj.points.pop(frame_idx, None)
        is_init, reverse, temp = self._pending(obj, frame_idx)
        temp[frame_idx] = self._track_step(state, obj, frame_idx, is_init, None, binary, reverse, run_memory=False)
        return frame_idx, list(state["objects"]), self._video_masks(state, frame_idx, is_init)

    def propagate_in_video(
        self,
        state: dict[str, Any],
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[int], np.ndarray]]:
        """Yield ``(frame_idx, obj_ids, logits [N, 1, H, W])`` frame by frame, forgetting as it goes."""
        self._preflight(state)
        objects: dict[int, ObjectState] = state["objects"]
        frames = int(state["num_frames"])
        if not objects:
            raise UsageError("no prompt was given; add points, a box or a mask first")
        if start_frame_idx is None:
            start_frame_idx = min(t for obj in objects.values() for t in obj.cond)
        limit = frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            end = max(start_frame_idx - limit, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            order = range(start_frame_idx, min(start_frame_idx + limit, frames - 1) + 1)
        for frame_idx in order:
            masks = []
            for obj in objects.values():
                out = obj.cond.get(frame_idx)
                if out is None:
                    out = self._track_step(state, obj, frame_idx, False, None, None, reverse, run_memory=True)
                    obj.non_cond[frame_idx] = out
                obj.tracked[frame_idx] = reverse
                masks.append(out.pred_masks)
            logits = resize(np.concatenate(masks), state["video_height"], state["video_width"])
            yield frame_idx, list(objects), logits
            self._forget(state, frame_idx, reverse)

    def memory_window(self) -> int:
        """How many frames back (or ahead, in reverse) a frame's outputs can still be attended to."""
        return memory_window(self.num_maskmem, self.memory_temporal_stride, self.max_obj_ptrs_in_encoder)

    # -- one frame ------------------------------------------------------------------------------

    @staticmethod
    def _pending(obj: ObjectState, frame_idx: int) -> tuple[bool, bool, dict[int, FrameOutput]]:
        """Whether a prompt on ``frame_idx`` is the object's first there, its tracking direction, its waiting room.

        The waiting room holds the output until propagation: conditioning for a first prompt, else correction.
        """
        is_init = frame_idx not in obj.tracked
        reverse = False if is_init else obj.tracked[frame_idx]
        return is_init, reverse, obj.temp_cond if is_init else obj.temp_non_cond

    def _object(self, state: dict[str, Any], obj_id: int) -> ObjectState:
        objects: dict[int, ObjectState] = state["objects"]
        return objects.setdefault(int(obj_id), ObjectState())

    def _features(self, state: dict[str, Any], frame_idx: int) -> dict[str, np.ndarray]:
        """The image encoder's outputs for a frame (the last frame's are kept)."""
        cached = state["features"]
        if cached is not None and cached[0] == frame_idx:
            features: dict[str, np.ndarray] = cached[1]
            return features
        pixels = state["images"].resized(frame_idx, self.image_size)
        image = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = self.sessions["image_encoder"].run(list(ENCODER_OUTPUTS), {"image": image})
        features = dict(zip(ENCODER_OUTPUTS, outputs, strict=True))
        state["features"] = (frame_idx, features)
        return features

    def _track_step(
        self,
        state: dict[str, Any],
        obj: ObjectState,
        frame_idx: int,
        is_init: bool,
        points: tuple[np.ndarray, np.ndarray] | None,
        mask: np.ndarray | None,
        reverse: bool,
        *,
        run_memory: bool,
        earlier: np.ndarray | None = None,
    ) -> FrameOutput:
        """``SAM2Base.track_step`` for one object on one frame."""
        features = self._features(state, frame_idx)
        high_res = {"high_res_feats_0": features["high_res_feats_0"], "high_res_feats_1": features["high_res_feats_1"]}
        if mask is not None:
            low, high, _, score, pointer = self.sessions["mask_prompt"].run(
                None, {"features": features["vision_features"], **high_res, "mask": mask}
            )
        else:
            embed = features["image_embed"] if is_init else self._conditioned(state, features, obj, frame_idx, reverse)
            quarter = self.image_size // 4
            if points is None:
                coords, classes = np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.float32)
            else:
                coords, classes = points[0][None], points[1][None].astype(np.float32)
            multimask = self._multimask(is_init, 0 if points is None else len(points[1]))
            low, high, _, score, pointer = self.sessions["video_decoder"].run(
                None,
                {
                    "image_embed": embed,
                    **high_res,
                    "point_coords": coords,
                    "point_labels": classes,
                    "mask_input": np.zeros((1, 1, quarter, quarter), np.float32) if earlier is None else earlier,
                    "has_mask_input": np.array([0.0 if earlier is None else 1.0], np.float32),
                    "multimask": np.array([1.0 if multimask else 0.0], np.float32),
                },
            )
        out = FrameOutput(low, pointer, score)
        if run_memory:
            out.memory = self._encode(features, high, score, from_points=points is not None)
        return out

    def _multimask(self, is_init: bool, num_points: int) -> bool:
        """``SAM2Base._use_multimask``: several candidate masks for 0..1 clicks (a box counts as 2)."""
        low, high = self.multimask_points
        return (
            self.multimask_output_in_sam
            and (is_init or self.multimask_output_for_tracking)
            and low <= num_points <= high
        )

    def _encode(
        self, features: dict[str, np.ndarray], mask_logits: np.ndarray, score: np.ndarray, *, from_points: bool
    ) -> np.ndarray:
        """The frame's memory for one object, rounded to bfloat16 as sam2's predictor stores it."""
        memory, position = self.sessions["memory_encoder"].run(
            None,
            {
                "features": features["vision_features"],
                "mask_logits": np.ascontiguousarray(mask_logits, dtype=np.float32),
                "object_score_logits": score,
                "binarize": np.array([1.0 if from_points else 0.0], np.float32),
            },
        )
        if self._memory_pos is None:
            self._memory_pos = position  # the same for every frame and object (sam2 keeps one copy)
        return to_bfloat16(memory)

    def _conditioned(
        self, state: dict[str, Any], features: dict[str, np.ndarray], obj: ObjectState, frame_idx: int, reverse: bool
    ) -> np.ndarray:
        """The frame's features conditioned on the object's memories and pointers (memory attention)."""
        selected, unselected = select_closest_cond_frames(frame_idx, obj.cond, self.max_cond_frames_in_attn)
        chosen: list[tuple[int, FrameOutput | None]] = [(0, out) for out in selected.values()]
        stride = self.memory_temporal_stride
        for t_pos in range(1, self.num_maskmem):
            t_rel = self.num_maskmem - t_pos  # frames before the current one
            if t_rel == 1:
                previous = frame_idx + 1 if reverse else frame_idx - 1
            elif reverse:
                previous = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
            else:
                previous = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
            out = obj.non_cond.get(previous)
            chosen.append((t_pos, out if out is not None else unselected.get(previous)))
        memories, indices = [], []
        for t_pos, out in chosen:
            if out is None or out.memory is None:
                continue
            memories.append(from_bfloat16(out.memory))
            indices.append(self.num_maskmem - t_pos - 1)
        pointers, positions = self._pointers(state, obj, frame_idx, reverse, selected, unselected)
        assert self._memory_pos is not None  # a conditioning frame's memory was encoded before
        (conditioned,) = self.sessions["memory_attention"].run(
            None,
            {
                "features": features["vision_features"],
                "features_pos": features["vision_pos_enc"],
                "memory": np.concatenate(memories),
                "memory_pos": np.repeat(self._memory_pos, len(memories), axis=0),
                "memory_temporal_index": np.array(indices, dtype=np.int64),
                "object_pointers": pointers,
                "object_pointer_positions": positions,
            },
        )
        result: np.ndarray = conditioned
        return result

    def _pointers(
        self,
        state: dict[str, Any],
        obj: ObjectState,
        frame_idx: int,
        reverse: bool,
        selected: dict[int, FrameOutput],
        unselected: dict[int, FrameOutput],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Object pointers ``[P, C]`` and their normalised signed distances ``[P]`` (P may be 0)."""
        frames = int(state["num_frames"])
        most = min(frames, self.max_obj_ptrs_in_encoder)
        cond = {
            t: out
            for t, out in selected.items()
            if not self.only_past_pointers or (t >= frame_idx if reverse else t <= frame_idx)
        }
        sign = -1 if reverse else 1
        found = [
            ((frame_idx - t) * sign if self.signed_pointer_positions else abs(frame_idx - t), out.pointer)
            for t, out in cond.items()
        ]
        for t_diff in range(1, most):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= frames:
                break
            out = obj.non_cond.get(t, unselected.get(t))
            if out is not None:
                found.append((t_diff, out.pointer))
        width = self.bundle.manifest["hidden_dim"]
        if not found:
            return np.zeros((0, width), np.float32), np.zeros(0, np.float32)
        positions = np.array([p for p, _ in found], dtype=np.float32) / np.float32(max(most - 1, 1))
        return np.concatenate([pointer for _, pointer in found]).astype(np.float32), positions

    # -- prompts into memory, outputs, forgetting -----------------------------------------------

    def _preflight(self, state: dict[str, Any]) -> None:
        """Encode the prompted frames' memories and make them conditioning frames (sam2's preflight)."""
        for obj_id, obj in state["objects"].items():
            for temp, target in ((obj.temp_non_cond, obj.non_cond), (obj.temp_cond, obj.cond)):
                for frame_idx, out in temp.items():
                    if out.memory is None:
                        high = resize(out.pred_masks, self.image_size, self.image_size)
                        out.memory = self._encode(self._features(state, frame_idx), high, out.score, from_points=True)
                    target[frame_idx] = out
                temp.clear()
            if not obj.cond:
                raise UsageError(f"object {obj_id} has no prompt; give it points, a box or a mask")
            for frame_idx in obj.cond:
                obj.non_cond.pop(frame_idx, None)

    def _video_masks(self, state: dict[str, Any], frame_idx: int, cond: bool) -> np.ndarray:
        """Every object's latest logits on ``frame_idx`` at video resolution (-1024 where it has none).

        As sam2 consolidates them after a prompt: the pending outputs of the prompt's kind
        (conditioning or correction) first, then the stored ones.
        """
        quarter = self.image_size // 4
        masks = []
        for obj in state["objects"].values():
            out = (
                (obj.temp_cond if cond else obj.temp_non_cond).get(frame_idx)
                or obj.cond.get(frame_idx)
                or obj.non_cond.get(frame_idx)
            )
            masks.append(np.full((1, 1, quarter, quarter), -1024.0, np.float32) if out is None else out.pred_masks)
        return resize(np.concatenate(masks), state["video_height"], state["video_width"])

    def _forget(self, state: dict[str, Any], frame_idx: int, reverse: bool) -> None:
        """Drop outputs no later frame reads, as the streaming predictor does (:mod:`sam2tool.models.forgetting`)."""
        window = self.memory_window()
        prompted = {t for obj in state["objects"].values() for t in obj.cond}
        for obj in state["objects"].values():
            forget(obj.non_cond, obj.tracked, prompted, frame_idx, reverse, window)


def select_closest_cond_frames(
    frame_idx: int, outputs: dict[int, FrameOutput], most: int
) -> tuple[dict[int, FrameOutput], dict[int, FrameOutput]]:
    """sam2's ``select_closest_cond_frames``: up to ``most`` conditioning frames nearest ``frame_idx`` (-1: all)."""
    if most == -1 or len(outputs) <= most:
        return outputs, {}
    selected: dict[int, FrameOutput] = {}
    before = max((t for t in outputs if t < frame_idx), default=None)
    if before is not None:
        selected[before] = outputs[before]
    after = min((t for t in outputs if t >= frame_idx), default=None)
    if after is not None:
        selected[after] = outputs[after]
    remaining = sorted((t for t in outputs if t not in selected), key=lambda t: abs(t - frame_idx))
    for t in remaining[: most - len(selected)]:
        selected[t] = outputs[t]
    return selected, {t: out for t, out in outputs.items() if t not in selected}
