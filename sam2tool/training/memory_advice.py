"""What to change when training runs out of memory, given the run's own settings.

The advice names the settings still left to change, in the order they save the most memory for
the least loss of quality: activation checkpointing (recomputes activations, same results),
LoRA adapters on the image encoder (no optimizer state or gradients for its weights), then
shorter clips, fewer objects, smaller batches, a smaller image size and a smaller model.
"""

from __future__ import annotations

from sam2tool.config.schema import Sam2ToolSettings

#: Model sizes from the largest down.
_SMALLER = {"large": "base_plus", "base_plus": "small", "small": "tiny"}


def memory_steps(settings: Sam2ToolSettings) -> list[str]:
    """``key=value`` changes that lower training memory, the most effective not yet applied first."""
    model, data = settings.model, settings.dataset
    steps = []
    if not model.activation_checkpointing:
        steps.append("model.activation_checkpointing=true")
    if not model.lora_targets:
        steps.append("model.lora_targets=[image_encoder] (LoRA adapters instead of the encoder's weights)")
    if data.video_clip_length > 4:
        steps.append(f"dataset.video_clip_length={max(data.video_clip_length // 2, 4)}")
    if data.max_num_objects > 1:
        steps.append(f"dataset.max_num_objects={max(data.max_num_objects // 2, 1)}")
    if data.batch_size > 1:
        steps.append(f"dataset.batch_size={data.batch_size // 2} (with trainer.accumulate_grad_batches=2)")
    if data.image_size > 512:
        steps.append(f"dataset.image_size={max(data.image_size // 2 // 32 * 32, 512)}")
    if model.size in _SMALLER:
        steps.append(f"model.size={_SMALLER[model.size]}")
    return steps


def out_of_memory_advice(settings: Sam2ToolSettings, device_memory: int | None = None) -> str:
    """One sentence: what ran out of memory, on what, and the settings to change, first one first."""
    model, data = settings.model, settings.dataset
    what = (
        f"{model.version} {model.size} at {data.image_size} px, {data.video_clip_length}-frame clips, "
        f"up to {data.max_num_objects} objects, batch {data.batch_size}"
    )
    where = f" on a {device_memory / 2**30:.0f} GiB device" if device_memory else ""
    steps = memory_steps(settings)
    if not steps:
        return f"out of memory while training {what}{where}; every memory setting is at its lowest: use a larger GPU"
    advice = f"set {steps[0]}" + (f"; if that is not enough, then {', then '.join(steps[1:])}" if steps[1:] else "")
    return f"out of memory while training {what}{where}; {advice}"
