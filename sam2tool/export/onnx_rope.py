"""SAM 2's memory attention with real-valued rotary position encoding, for ONNX.

sam2 rotates queries and keys of its memory attention (``RoPEAttention``) with complex tensors
(``torch.polar``, ``view_as_complex``), which ONNX cannot express: the public ONNX exports of SAM 2
stop at single images because of it. A rotation by an angle is the same as multiplying the pair
``(a, b)`` of neighbouring channels by the 2 x 2 matrix ``[[cos, -sin], [sin, cos]]``, so
:func:`rope_tables` keeps the cosines and sines of sam2's angles and :func:`rotate` applies them to
real tensors. Tests compare both with sam2's complex version.

:class:`MemoryAttentionGraph` is sam2's ``MemoryAttention`` (every layer, the final norm) at one
image size, with that rotation, taking the memory bank as separate inputs of variable length:
spatial memories (rotated with the current frame's RoPE grid, repeated once per memory frame) and
object pointer tokens (not rotated), each with its positional encoding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def rope_tables(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines ``[end_x * end_y, dim / 2]`` of sam2's axial RoPE angles (``compute_axial_cis``).

    Token ``t`` of a row-major ``end_y x end_x`` grid sits at ``x = t % end_x``, ``y = t // end_x``;
    the first ``dim / 4`` channel pairs turn with ``x``, the others with ``y``.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair of ``x`` ``[..., N, dim]`` by the angles of ``cos``/``sin`` ``[N, dim / 2]``.

    The real form of sam2's ``view_as_complex(x) * freqs_cis``: pair ``(a, b)`` becomes
    ``(a cos - b sin, a sin + b cos)``.
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).type_as(x)


def rotate_repeated(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """:func:`rotate` keys ``[B, H, r * N, dim]`` of ``r`` memory frames, each with the same ``N`` angles.

    sam2 repeats ``freqs_cis`` ``r`` times along the sequence (``repeat_freqs_k``); splitting the
    sequence into frames and broadcasting does the same without knowing ``r`` in advance.
    """
    tokens, dim = cos.shape[0], x.shape[-1]
    frames = x.reshape(x.shape[0], x.shape[1], -1, tokens, dim)
    return rotate(frames, cos, sin).reshape(x.shape)


class RealRoPEAttention(nn.Module):
    """A sam2 ``RoPEAttention`` (its projections, shared) rotating with real tensors on a fixed grid.

    Args:
        attention: The sam2 ``RoPEAttention``.
        grid: Side of the square token grid of the current frame (image size / 16).

    """

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, attention: Any, grid: int) -> None:
        super().__init__()
        self.attention = attention
        self.num_heads = int(attention.num_heads)
        self.repeat_keys = bool(attention.rope_k_repeat)
        head_dim = int(attention.internal_dim) // self.num_heads
        theta = float(attention.compute_cis.keywords.get("theta", 10000.0))
        cos, sin = rope_tables(head_dim, grid, grid, theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rotated_keys: int | None = None) -> Any:
        """Attention of ``q`` ``[B, Nq, C]`` over ``k``/``v`` ``[B, Nk, C]``.

        Only the first ``rotated_keys`` keys rotate (sam2's ``num_k_exclude_rope`` are the others);
        None rotates every key.
        """
        attention = self.attention
        q = rotate(attention._separate_heads(attention.q_proj(q), self.num_heads), self.cos, self.sin)
        k = attention._separate_heads(attention.k_proj(k), self.num_heads)
        v = attention._separate_heads(attention.v_proj(v), self.num_heads)
        split = k.shape[2] if rotated_keys is None else rotated_keys
        rotated, plain = k[:, :, :split], k[:, :, split:]
        turn = rotate_repeated if self.repeat_keys else rotate
        rotated = turn(rotated, self.cos, self.sin)
        out = F.scaled_dot_product_attention(q, torch.cat([rotated, plain], dim=2), v)
        return attention.out_proj(attention._recombine_heads(out))


class MemoryAttentionGraph(nn.Module):
    """Memory attention of one frame, from the memory bank as sam2's video predictor stores it (eval mode).

    ``SAM2Base._prepare_memory_conditioned_features`` after it has chosen the memories: it adds the
    temporal encodings, encodes the object pointers' positions, splits each pointer into
    memory-wide tokens and runs ``MemoryAttention`` (every layer, the final norm) with real-valued
    RoPE. Which frames the bank holds (conditioning frames, the last ``num_maskmem - 1`` frames,
    pointers of up to ``max_obj_ptrs_in_encoder`` frames) is the caller's choice.

    Inputs (batch 1; ``C`` the hidden width, ``Cm`` the memory width, ``g`` = image size / 16):

    - ``features`` ``[1, C, g, g]``: the current frame's lowest-resolution backbone features;
    - ``features_pos`` ``[1, C, g, g]``: their positional encoding;
    - ``memory`` ``[F, Cm, g, g]``: the spatial memories of ``F`` frames (the memory encoder's
      ``memory``);
    - ``memory_pos`` ``[F, Cm, g, g]``: their positional encodings (the memory encoder's ``memory_pos``);
    - ``memory_temporal_index`` ``[F]`` (int64): which of the ``num_maskmem`` temporal encodings
      each memory gets: ``num_maskmem - 1`` for a conditioning frame, ``d - 1`` for the ``d``-th
      most recent memory, ``1 <= d < num_maskmem`` (the frame ``d`` frames before the current
      one, or after it tracking backwards, at sam2's ``memory_temporal_stride_for_eval`` of 1);
    - ``object_pointers`` ``[P, C]``: the object pointers of ``P >= 0`` frames (the decoder's
      ``object_pointer``; none when an object is tracked before the frame it was prompted on and
      only past pointers count, as in sam2.1);
    - ``object_pointer_positions`` ``[P]``: each pointer's frame distance divided by the largest
      one possible (``min(frames, max_obj_ptrs_in_encoder) - 1``), signed as sam2.1 signs it.

    Output ``conditioned`` ``[1, C, g, g]``: the features conditioned on memory, which the decoder
    reads as ``image_embed``.

    Args:
        model: A ``SAM2Base``.
        image_size: The model's input size.

    """

    def __init__(self, model: Any, image_size: int) -> None:
        super().__init__()
        attention = model.memory_attention
        if attention.batch_first is not True:
            raise ValueError("memory attention with batch_first=False is not supported")
        if not model.use_obj_ptrs_in_encoder:
            raise ValueError("a model without object pointers in memory attention is not supported")
        self.attention = attention
        self.maskmem_tpos_enc = model.maskmem_tpos_enc  # [num_maskmem, 1, 1, Cm]
        self.add_pointer_positions = bool(model.add_tpos_enc_to_obj_ptrs)
        self.obj_ptr_tpos_proj = model.obj_ptr_tpos_proj
        self.hidden = int(model.hidden_dim)
        self.memory_width = int(model.mem_dim)
        self.pointer_position_width = self.hidden if model.proj_tpos_enc_in_obj_ptrs else self.memory_width
        grid = image_size // 16
        self.self_attention = nn.ModuleList(RealRoPEAttention(layer.self_attn, grid) for layer in attention.layers)
        self.cross_attention = nn.ModuleList(
            RealRoPEAttention(layer.cross_attn_image, grid) for layer in attention.layers
        )

    def forward(
        self,
        features: torch.Tensor,
        features_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        memory_temporal_index: torch.Tensor,
        object_pointers: torch.Tensor,
        object_pointer_positions: torch.Tensor,
    ) -> torch.Tensor:
        """Condition ``features`` on the memory bank."""
        batch, channels, height, width = features.shape
        curr = features.flatten(2).permute(0, 2, 1)  # [1, g*g, C]
        curr_pos = features_pos.flatten(2).permute(0, 2, 1)
        spatial = memory.flatten(2).permute(0, 2, 1).reshape(1, -1, self.memory_width)  # [1, F*g*g, Cm]
        temporal = torch.index_select(self.maskmem_tpos_enc.reshape(-1, self.memory_width), 0, memory_temporal_index)
        spatial_pos = (memory_pos.flatten(2).permute(0, 2, 1) + temporal[:, None, :]).reshape(1, -1, self.memory_width)
        tokens, tokens_pos = self._pointer_tokens(object_pointers, object_pointer_positions)
        bank = torch.cat([spatial, tokens], dim=1)
        bank_pos = torch.cat([spatial_pos, tokens_pos], dim=1)
        output = curr + 0.1 * curr_pos if self.attention.pos_enc_at_input else curr
        for layer, self_attn, cross_attn in zip(
            self.attention.layers, self.self_attention, self.cross_attention, strict=True
        ):
            output = self._layer(layer, self_attn, cross_attn, output, curr_pos, bank, bank_pos, spatial.shape[1])
        normed: torch.Tensor = self.attention.norm(output)
        return normed.permute(0, 2, 1).reshape(batch, channels, height, width)

    def _pointer_tokens(self, pointers: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pointers ``[P, C]`` as ``[1, P * C / Cm, Cm]`` tokens with their temporal encodings."""
        count = pointers.shape[0]
        if self.add_pointer_positions:
            encoded: torch.Tensor = self.obj_ptr_tpos_proj(sine_encoding(positions, self.pointer_position_width))
        else:
            encoded = pointers.new_zeros(count, self.memory_width)
        splits = self.hidden // self.memory_width
        tokens = pointers.reshape(1, count * splits, self.memory_width)  # pointer-major, as sam2 flattens
        tokens_pos = encoded.repeat_interleave(splits, dim=0).reshape(1, count * splits, self.memory_width)
        return tokens, tokens_pos

    @staticmethod
    def _layer(
        layer: Any,
        self_attn: nn.Module,
        cross_attn: nn.Module,
        tgt: torch.Tensor,
        query_pos: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor,
        rotated_keys: int,
    ) -> torch.Tensor:
        """sam2's ``MemoryAttentionLayer.forward`` in eval mode (dropout off)."""
        tgt2 = layer.norm1(tgt)
        q = k = tgt2 + query_pos if layer.pos_enc_at_attn else tgt2
        tgt = tgt + self_attn(q, k, tgt2)
        tgt2 = layer.norm2(tgt)
        tgt = tgt + cross_attn(
            tgt2 + query_pos if layer.pos_enc_at_cross_attn_queries else tgt2,
            memory + pos if layer.pos_enc_at_cross_attn_keys else memory,
            memory,
            rotated_keys,
        )
        tgt2 = layer.norm3(tgt)
        out: torch.Tensor = tgt + layer.linear2(layer.activation(layer.linear1(tgt2)))
        return out


def sine_encoding(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """sam2's ``get_1d_sine_pe``: ``[P]`` positions to ``[P, dim]`` (sines, then cosines)."""
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=positions.device)
    scale = temperature ** (2 * torch.div(steps, 2, rounding_mode="floor") / half)
    angles = positions.float().unsqueeze(-1) / scale
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
