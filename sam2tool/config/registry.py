"""The table of SAM 2 / SAM 2.1 models sam2tool knows: size x version -> config, checkpoint, URL.

This module is pure data and must not import torch, sam2 or hydra: the config schema and
``--help`` read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelVersion = Literal["sam2", "sam2.1"]
ModelSize = Literal["tiny", "small", "base_plus", "large", "micro"]

VERSIONS: tuple[ModelVersion, ...] = ("sam2", "sam2.1")
SIZES: tuple[ModelSize, ...] = ("tiny", "small", "base_plus", "large", "micro")

#: Where Meta publishes the official checkpoints, per version (files are ``<name>.pt``).
OFFICIAL_BASE_URLS: dict[ModelVersion, str] = {
    "sam2": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/",
    "sam2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
}

# The short size suffix of the Hydra configs shipped in the sam2 package.
_CONFIG_SUFFIX: dict[ModelSize, str] = {
    "tiny": "t",
    "small": "s",
    "base_plus": "b+",
    "large": "l",
    "micro": "t",  # micro is the tiny config with the overrides below
}

#: A very small SAM 2 architecture (about 2.6 M parameters) for CPU demos and tests. It keeps
#: every SAM 2 component (Hiera trunk, FPN neck, memory attention, memory encoder, prompt
#: encoder, mask decoder), only narrower and shallower. Global attention must not sit on a
#: q-pool block (the first block of stages 2..4), or Hiera divides by zero. As in Meta's sizes
#: (hidden width 256), the memory is 64 channels wide and narrower than the hidden width (128),
#: so object pointers are split into tokens (2): transformers' SAM 2 video model reads memories
#: of exactly 64 channels and only handles pointers that are split, and ``export --format hf``
#: needs both.
MICRO_OVERRIDES: tuple[str, ...] = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_spec=[4,4,4,4]",
    "++model.image_encoder.neck.d_model=128",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=128",
    "++model.memory_attention.d_model=128",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=128",
    "++model.memory_attention.layer.dim_feedforward=256",
    "++model.memory_attention.layer.self_attention.embedding_dim=128",
    "++model.memory_attention.layer.cross_attention.embedding_dim=128",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=64",
    "++model.memory_encoder.out_dim=64",
    "++model.memory_encoder.position_encoding.num_pos_feats=64",
    "++model.memory_encoder.mask_downsampler.embed_dim=128",
    "++model.memory_encoder.fuser.layer.dim=128",
    "++model.memory_encoder.fuser.num_layers=1",
    "++model.memory_encoder.in_dim=128",
)

#: Hiera trunk (embed_dim, number of blocks) of each size: how a checkpoint reveals its size.
TRUNK_SHAPES: dict[ModelSize, tuple[int, int]] = {
    "tiny": (96, 12),
    "small": (96, 16),
    "base_plus": (112, 24),
    "large": (144, 48),
    "micro": (16, 5),
}

#: Top-level parameter groups of ``SAM2Base``; ``model.trainable_modules`` entries start with one.
COMPONENTS: tuple[str, ...] = (
    "image_encoder",
    "memory_attention",
    "memory_encoder",
    "sam_prompt_encoder",
    "sam_mask_decoder",
    "obj_ptr_proj",
    "obj_ptr_tpos_proj",
    "mask_downsample",
    "maskmem_tpos_enc",
    "no_mem_embed",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
)


@dataclass(frozen=True)
class ModelSpec:
    """One row of the registry.

    Attributes:
        version: ``sam2`` or ``sam2.1``.
        size: ``tiny``, ``small``, ``base_plus``, ``large`` or ``micro``.
        config_name: Hydra config name inside the ``sam2`` package.
        checkpoint_name: Name of the official checkpoint (file ``<name>.pt``), of the base model
            packaged with sam2tool (SAM 2.1 micro), or None (SAM 2 micro has neither).
        overrides: Hydra overrides applied on top of the config (micro only).
        packaged: The weights ship inside the sam2tool package (``<name>.safetensors``) instead of
            being downloaded from Meta.
        image_size: The input resolution the weights were trained at (the default for prediction).

    """

    version: ModelVersion
    size: ModelSize
    config_name: str
    checkpoint_name: str | None
    overrides: tuple[str, ...] = ()
    packaged: bool = False
    image_size: int = 1024

    @property
    def checkpoint_filename(self) -> str | None:
        """File name of the checkpoint (``sam2.1_hiera_tiny.pt``, ``sam2.1_micro.safetensors``), or None."""
        if self.checkpoint_name is None:
            return None
        return f"{self.checkpoint_name}{'.safetensors' if self.packaged else '.pt'}"

    @property
    def display_name(self) -> str:
        """Human name such as ``SAM 2.1 base_plus``."""
        return f"SAM {self.version[3:]} {self.size}"


#: The pretrained base that ships inside the package (``nox -s pretrain`` makes it), and its resolution.
PACKAGED_BASE = "sam2.1_micro"
PACKAGED_IMAGE_SIZE = 128


def _make_spec(version: ModelVersion, size: ModelSize) -> ModelSpec:
    config_name = f"configs/{version}/{version}_hiera_{_CONFIG_SUFFIX[size]}.yaml"
    if size == "micro":
        packaged = version == "sam2.1"
        name = PACKAGED_BASE if packaged else None
        return ModelSpec(version, size, config_name, name, MICRO_OVERRIDES, packaged, PACKAGED_IMAGE_SIZE)
    return ModelSpec(version, size, config_name, f"{version}_hiera_{size}")


REGISTRY: dict[tuple[ModelVersion, ModelSize], ModelSpec] = {
    (version, size): _make_spec(version, size) for version in VERSIONS for size in SIZES
}

#: Meta's checkpoint name -> spec, e.g. ``"sam2.1_hiera_large"``.
OFFICIAL_CHECKPOINTS: dict[str, ModelSpec] = {
    spec.checkpoint_name: spec for spec in REGISTRY.values() if spec.checkpoint_name is not None and not spec.packaged
}
#: Every checkpoint name ``model.checkpoint`` and ``--model`` accept: Meta's and the packaged base.
NAMED_CHECKPOINTS: dict[str, ModelSpec] = {
    spec.checkpoint_name: spec for spec in REGISTRY.values() if spec.checkpoint_name is not None
}


def get_spec(version: ModelVersion, size: ModelSize) -> ModelSpec:
    """Return the registry row for ``version`` and ``size``."""
    return REGISTRY[(version, size)]


def official_checkpoint_spec(value: str) -> ModelSpec | None:
    """Return the spec whose official or packaged checkpoint is named ``value`` (suffix optional), else None."""
    name = value.removesuffix(".pt").removesuffix(".safetensors")
    return NAMED_CHECKPOINTS.get(name)


def official_url(spec: ModelSpec, base_url: str | None = None) -> str:
    """URL of the official checkpoint of ``spec``, optionally from a mirror ``base_url``."""
    if spec.checkpoint_filename is None or spec.packaged:
        raise ValueError(f"{spec.display_name} has no official checkpoint to download")
    base = base_url if base_url is not None else OFFICIAL_BASE_URLS[spec.version]
    return base.rstrip("/") + "/" + spec.checkpoint_filename


def size_from_trunk(embed_dim: int, depth: int) -> ModelSize | None:
    """Return the size whose Hiera trunk has this embedding width and depth, if any."""
    for size, shape in TRUNK_SHAPES.items():
        if shape == (embed_dim, depth):
            return size
    return None
