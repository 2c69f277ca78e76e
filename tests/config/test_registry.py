"""The model table matches what the sam2 package ships."""

from __future__ import annotations

from importlib import resources

import pytest

from sam2tool.config.registry import OFFICIAL_CHECKPOINTS, REGISTRY, get_spec, official_checkpoint_spec, official_url


@pytest.mark.parametrize("spec", list(REGISTRY.values()), ids=lambda s: f"{s.version}-{s.size}")
def test_every_config_name_exists_in_the_sam2_package(spec) -> None:  # type: ignore[no-untyped-def]
    assert resources.files("sam2").joinpath(spec.config_name).is_file()


def test_official_names_and_urls() -> None:
    assert len(OFFICIAL_CHECKPOINTS) == 8
    spec = get_spec("sam2.1", "base_plus")
    assert spec.checkpoint_filename == "sam2.1_hiera_base_plus.pt"
    assert official_url(spec) == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt"
    assert official_url(get_spec("sam2", "large")) == (
        "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt"
    )
    assert official_url(spec, "http://mirror.local/ckpts/") == "http://mirror.local/ckpts/sam2.1_hiera_base_plus.pt"
    assert official_checkpoint_spec("sam2_hiera_small.pt") == get_spec("sam2", "small")
    assert official_checkpoint_spec("sam2.1_hiera_huge") is None
    assert get_spec("sam2", "micro").checkpoint_name is None
    packaged = get_spec("sam2.1", "micro")
    assert packaged.packaged and packaged.checkpoint_filename == "sam2.1_micro.safetensors"
    assert official_checkpoint_spec("sam2.1_micro") == packaged == official_checkpoint_spec("sam2.1_micro.safetensors")
    assert "sam2.1_micro" not in OFFICIAL_CHECKPOINTS
    with pytest.raises(ValueError, match="no official checkpoint to download"):
        official_url(packaged)


def test_official_names_match_sam2s_own_table() -> None:
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    theirs = {(config, filename) for config, filename in HF_MODEL_ID_TO_FILENAMES.values()}
    ours = {(spec.config_name, spec.checkpoint_filename) for spec in OFFICIAL_CHECKPOINTS.values()}
    assert ours == theirs
