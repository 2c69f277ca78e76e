"""Out-of-memory advice names the settings of this run still left to lower, the most effective first."""

from __future__ import annotations

from sam2tool.config.loading import load_settings
from sam2tool.training.memory_advice import memory_steps, out_of_memory_advice


def settings(*overrides: str):  # type: ignore[no-untyped-def]
    return load_settings(None, ["dataset.root=/data", *overrides])


def test_the_first_step_is_the_most_effective_one_not_yet_taken() -> None:
    mose = settings("model.size=base_plus", "dataset.image_size=1024", "dataset.video_clip_length=8")
    assert memory_steps(mose)[0] == "model.activation_checkpointing=true"
    done = settings(
        "model.size=large",
        "dataset.image_size=1024",
        "dataset.video_clip_length=8",
        "dataset.max_num_objects=3",
        "model.activation_checkpointing=true",
        "model.lora_targets=[image_encoder]",
    )
    steps = memory_steps(done)
    assert steps[:3] == ["dataset.video_clip_length=4", "dataset.max_num_objects=1", "dataset.image_size=512"]
    assert steps[-1] == "model.size=base_plus"
    message = out_of_memory_advice(done, 24 * 2**30)
    assert message.startswith("out of memory while training sam2.1 large at 1024 px, 8-frame clips, up to 3 objects")
    assert "on a 24 GiB device; set dataset.video_clip_length=4; if that is not enough, then" in message


def test_nothing_left_to_lower_says_so() -> None:
    lowest = settings(
        "model.size=tiny",
        "dataset.image_size=512",
        "dataset.video_clip_length=4",
        "dataset.max_num_objects=1",
        "model.activation_checkpointing=true",
        "model.lora_targets=[image_encoder]",
    )
    assert memory_steps(lowest) == []
    assert out_of_memory_advice(lowest).endswith("every memory setting is at its lowest: use a larger GPU")
