"""Export a SAM 2 model to ONNX graphs and check them with onnxruntime against PyTorch.

Six graphs: the two below serve single images; with the four of
:mod:`sam2tool.export.onnx_video` (memory attention, memory encoder, video decoder, mask prompt)
and ``onnx_manifest.json`` they track videos (:mod:`sam2tool.models.onnx_tracker`).

The two image graphs split SAM 2's image predictor (``sam2.sam2_image_predictor.SAM2ImagePredictor``)
where it splits itself: the image encoder runs once per image, the prompt encoder and mask decoder
once per click. ``S`` is the model's input size (``model.image_size``, e.g. 1024) and ``C`` the
mask decoder's width (256 for every official size). All tensors are float32 with batch size 1.

``image_encoder.onnx``
    Input ``image`` ``[1, 3, S, S]``: an RGB image with values in [0, 1], already resized to
    ``S x S`` (SAM 2 resizes to a square, ignoring the aspect ratio). The graph does the ImageNet
    normalisation (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225) itself.

    Outputs, what ``SAM2ImagePredictor.set_image`` keeps, then what tracking reads:

    - ``image_embed`` ``[1, C, S/16, S/16]``: the lowest-resolution feature map with
      ``no_mem_embed`` added (an image seen without memory);
    - ``high_res_feats_0`` ``[1, C/8, S/4, S/4]`` and ``high_res_feats_1`` ``[1, C/4, S/8, S/8]``:
      the two higher-resolution feature maps after the mask decoder's ``conv_s0`` / ``conv_s1``;
    - ``vision_features`` ``[1, C, S/16, S/16]``: the lowest-resolution map without ``no_mem_embed``
      and ``vision_pos_enc`` ``[1, C, S/16, S/16]``, its positional encoding (memory attention's
      and the memory encoder's inputs). Code that unpacks ``run(None, ...)`` into the first three
      asks for them by name.

``mask_decoder.onnx`` (prompt encoder + mask decoder)
    Inputs:

    - ``image_embed``, ``high_res_feats_0``, ``high_res_feats_1``: the image encoder's outputs;
    - ``point_coords`` ``[1, N, 2]``: (x, y) in model-input pixels, 0..S (multiply original-image
      coordinates by ``S / width`` and ``S / height``); ``N >= 1`` is dynamic;
    - ``point_labels`` ``[1, N]``: 1 positive click, 0 negative click, 2 and 3 the top-left and
      bottom-right corners of a box, -1 an ignored (padding) point. Put a box's two corners before
      the clicks, as the predictor does. The graph appends SAM 2's own padding point;
    - ``mask_input`` ``[1, 1, S/4, S/4]``: low-resolution logits of a previous prediction (the
      predictor clamps them to [-32, 32] first), or zeros;
    - ``has_mask_input`` ``[1]``: 1 to use ``mask_input``, 0 to ignore it.

    Outputs:

    - ``masks`` ``[1, 4, S/4, S/4]``: low-resolution mask logits of the four mask tokens. Index 0
      is the single-mask output (``multimask_output=False``), 1..3 the three multimask outputs
      (``multimask_output=True``). Resize bilinearly to the original image size and threshold at 0
      for binary masks;
    - ``iou_predictions`` ``[1, 4]``: the predicted IoU of each of the four masks;
    - ``object_score_logits`` ``[1, 1]``: logit that the object is present in the image.

Both graphs are exported with ``torch.onnx.export(dynamo=True)`` (the ``torch.export``-based
exporter, which needs onnxscript) from the model in eval mode, fp32, on the CPU, each into one
self-contained ``.onnx`` file. ``export_onnx`` then runs each graph with onnxruntime on random
inputs unlike the export examples (another image, 1 and 5 points, with and without a mask input)
and compares every output with PyTorch.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sam2tool.errors import ExportError

log = logging.getLogger(__name__)

IMAGE_ENCODER_FILE = "image_encoder.onnx"
MASK_DECODER_FILE = "mask_decoder.onnx"
#: ONNX opset of both graphs: the opset onnxscript's torch library is written in (onnxruntime >= 1.14).
DEFAULT_OPSET = 18
#: Largest accepted |onnxruntime - torch| of any output element. Random-weight tiny and micro models
#: differ by at most 3e-6 on outputs of magnitude up to 3.5 (relative 1e-6): this leaves room for
#: trained weights with outputs in the hundreds, and still catches a wrong graph.
DEFAULT_TOLERANCE = 1e-3
#: The ImageNet statistics SAM 2's transforms normalise with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Name of the dynamic axis of ``point_coords`` and ``point_labels``.
NUM_POINTS = "num_points"
#: Packages the export needs (import name), all installed by the ``export`` extra.
REQUIRED_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
#: Number of points in the export example (1 would risk a size-1 specialisation).
_EXAMPLE_POINTS = 3
#: Number of points of each check case, and whether it has a mask input.
_CHECK_CASES = ((1, False), (5, True))
_BOX_AND_CLICKS = (2.0, 3.0, 1.0, 0.0, -1.0)
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

#: A tensor shape; a string names a dynamic axis.
Shape = list[int | str]


class ImageEncoderGraph(nn.Module):
    """``image`` in [0, 1] to the features ``set_image`` computes, and the raw features tracking needs.

    Args:
        model: A ``SAM2Base`` with high-resolution features (``use_high_res_features_in_sam``).

    """

    no_mem_embed: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = _attribute(model, "image_encoder")
        decoder = _attribute(model, "sam_mask_decoder")
        self.conv_s0 = decoder.conv_s0
        self.conv_s1 = decoder.conv_s1
        self.num_feature_levels = int(_attribute(model, "num_feature_levels"))
        no_mem_embed = _attribute(model, "no_mem_embed").detach().reshape(1, -1, 1, 1).clone()
        if not _attribute(model, "directly_add_no_mem_embed"):
            no_mem_embed.zero_()
        self.register_buffer("no_mem_embed", no_mem_embed)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))

    def forward(
        self, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalise, run the backbone, project the two high-resolution levels, add ``no_mem_embed``.

        Returns ``(image_embed, high_res_feats_0, high_res_feats_1, vision_features, vision_pos_enc)``.
        """
        normalised = (image - self.mean) / self.std
        # SAM2Base.forward_image and _prepare_backbone_features, kept in NCHW layout.
        backbone = self.image_encoder(normalised)
        levels = backbone["backbone_fpn"][-self.num_feature_levels :]
        position = backbone["vision_pos_enc"][-self.num_feature_levels :][2]
        return (
            levels[2] + self.no_mem_embed,
            self.conv_s0(levels[0]),
            self.conv_s1(levels[1]),
            levels[2],
            position.to(levels[2].dtype),
        )


class MaskDecoderGraph(nn.Module):
    """SAM 2's prompt encoder and mask decoder for one image and one prompt, all four mask tokens.

    Args:
        model: A ``SAM2Base`` with high-resolution features (``use_high_res_features_in_sam``).

    """

    image_pe: torch.Tensor

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = _attribute(model, "sam_prompt_encoder")
        self.mask_decoder = _attribute(model, "sam_mask_decoder")
        with torch.no_grad():
            self.register_buffer("image_pe", self.prompt_encoder.get_dense_pe().clone())

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(masks, iou_predictions, object_score_logits)`` of all four mask tokens."""
        masks, iou_predictions, _, object_score_logits = self.decode(
            image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels, mask_input, has_mask_input
        )
        return masks, iou_predictions, object_score_logits

    def decode(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``MaskDecoder.predict_masks`` for the prompt: masks, IoUs, mask tokens and object score, all four tokens."""
        # SAM2ImagePredictor hands boxes to the prompt encoder as points, so the points are always padded.
        sparse = self.prompt_encoder._embed_points(point_coords, point_labels, pad=True)
        masks, iou_predictions, tokens, object_score_logits = self.mask_decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=self._dense_embedding(mask_input, has_mask_input),
            repeat_image=False,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        return masks, iou_predictions, tokens, object_score_logits

    def _dense_embedding(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """``mask_downscaling(mask_input)`` if ``has_mask_input`` is 1, else ``no_mask_embed`` everywhere."""
        from_mask: torch.Tensor = self.prompt_encoder.mask_downscaling(mask_input)
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(from_mask)
        return torch.where(has_mask_input.reshape(1, 1, 1, 1) > 0.5, from_mask, no_mask)


@dataclass
class OnnxGraphCheck:
    """One exported graph, its inputs and outputs, and how far onnxruntime is from PyTorch.

    Attributes:
        file: File name inside the export folder, e.g. ``image_encoder.onnx``.
        max_abs_diff: Per output name, the largest |onnxruntime - torch| over the check inputs
            (empty when the export was not checked).
        tolerance: Largest accepted difference.
        inputs: Input name to shape (``"num_points"`` marks the dynamic axis).
        outputs: Output name to shape.
        max_abs_value: Per output name, the largest |torch| over the check inputs, for scale.
        int64_inputs: Inputs of dtype int64 (the others are float32).

    """

    file: str
    max_abs_diff: dict[str, float]
    tolerance: float
    inputs: dict[str, Shape] = field(default_factory=dict)
    outputs: dict[str, Shape] = field(default_factory=dict)
    max_abs_value: dict[str, float] = field(default_factory=dict)
    int64_inputs: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every checked output is within ``tolerance`` (also when nothing was checked)."""
        return all(diff <= self.tolerance for diff in self.max_abs_diff.values())

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: file, inputs and outputs with shapes, the check's diffs, tolerance, ok."""
        return {
            "file": self.file,
            "inputs": _tensors_json(self.inputs, self.int64_inputs),
            "outputs": _tensors_json(self.outputs),
            "checked": bool(self.max_abs_diff),
            "max_abs_diff": dict(self.max_abs_diff),
            "max_abs_value": dict(self.max_abs_value),
            "tolerance": self.tolerance,
            "ok": self.ok,
        }


@dataclass
class OnnxReport:
    """What ``export_onnx`` wrote and how its check went.

    Attributes:
        graphs: One entry per file, the image encoder first.
        opset: ONNX opset of both graphs.
        image_size: The model's input size ``S``.

    """

    graphs: list[OnnxGraphCheck]
    opset: int
    image_size: int

    @property
    def ok(self) -> bool:
        """True when every graph is within its tolerance."""
        return all(graph.ok for graph in self.graphs)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data describing both graphs and the check."""
        return {
            "format": "onnx",
            "exporter": "torch.onnx.export(dynamo=True)",
            "opset": self.opset,
            "image_size": self.image_size,
            "ok": self.ok,
            "graphs": [graph.to_json() for graph in self.graphs],
        }


#: Inputs per check case: the image encoder's PyTorch outputs of that case's image -> the graph's inputs.
CaseMaker = Callable[[Mapping[str, torch.Tensor], int, torch.Generator], dict[str, torch.Tensor]]


@dataclass
class GraphSpec:
    """A wrapper module, the names and shapes of its inputs and outputs (in order), and its check inputs.

    Attributes:
        file: File name inside the export folder.
        module: The wrapper to export.
        inputs: Input name -> shape (a string names a dynamic axis).
        outputs: Output name -> shape.
        int64_inputs: Inputs of dtype int64 (the others are float32).
        make_case: For the tracking graphs: inputs for case ``i`` (0 and 1 are the check cases, 2
            the export example) from the image encoder's outputs; None for the image graphs.
        dynamic_minimum: Smallest size of each dynamic axis (1 unless named here).

    """

    file: str
    module: nn.Module
    inputs: dict[str, Shape]
    outputs: dict[str, Shape]
    int64_inputs: tuple[str, ...] = ()
    make_case: CaseMaker | None = None
    dynamic_minimum: dict[str, int] = field(default_factory=dict)


def export_onnx(
    model: nn.Module,
    image_size: int,
    folder: Path,
    *,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
    check: bool = True,
    tracking: bool = True,
) -> OnnxReport:
    """Write the ONNX graphs into ``folder`` and check them.

    Args:
        model: A ``SAM2Base`` in fp32 on the CPU, built as the video predictor builds it
            (``sam2tool.models.build.VIDEO_PREDICTOR_OVERRIDES``) for the tracking graphs to track
            as it does. It is exported in eval mode; each module's training flag is restored
            afterwards.
        image_size: The model's input size ``S``.
        folder: Existing folder to write into (existing files of those names are replaced).
        opset: ONNX opset to export.
        tolerance: Largest accepted |onnxruntime - torch| of any output element.
        seed: Seed of the random example and check inputs.
        check: Run every graph with onnxruntime and compare it with PyTorch.
        tracking: Also write the four tracking graphs and ``onnx_manifest.json``
            (:mod:`sam2tool.export.onnx_video`); False writes the two image graphs only, as does a
            model whose tracking the graphs do not reproduce (with a warning naming the setting).

    Returns:
        What was written; when ``check`` is False its ``max_abs_diff`` entries are empty.

    Raises:
        ExportError: onnx, onnxscript or onnxruntime is missing, the model is not one the graphs
            reproduce, a graph could not be exported, or a check exceeded ``tolerance``.

    """
    _require_packages()
    _check_model(model, image_size)
    generator = torch.Generator().manual_seed(seed)
    with _eval_mode(model):
        graphs = _graphs(model, image_size)
        if tracking:
            from sam2tool.export.onnx_video import tracking_graphs

            try:
                graphs += tracking_graphs(model, image_size)
            except ExportError as error:  # a model built otherwise: the image graphs still serve
                log.warning("%s; writing the two image graphs only (no video tracking in onnxruntime)", error)
                tracking = False
        results = [
            OnnxGraphCheck(graph.file, {}, tolerance, graph.inputs, graph.outputs, int64_inputs=graph.int64_inputs)
            for graph in graphs
        ]
        encoded: dict[str, torch.Tensor] | None = None  # one random image's features, for every tracking graph
        for graph in graphs:
            if graph.make_case is None:
                example = _random_inputs(graph.inputs, image_size, _EXAMPLE_POINTS, generator)
            else:  # with dynamic axes of 3 (1 would risk a specialisation)
                if encoded is None:  # after the image encoder's own export, which names its failures
                    with torch.no_grad():
                        image = torch.rand(1, 3, image_size, image_size, generator=generator)
                        encoded = dict(zip(graphs[0].outputs, graphs[0].module(image), strict=True))
                example = graph.make_case(encoded, 2, generator)
            _export_graph(graph, folder / graph.file, example, opset)
        if check:
            _check_graphs(graphs, folder, results, image_size, generator)
    report = OnnxReport(results, opset, image_size)
    if tracking:
        from sam2tool.export.onnx_video import write_manifest

        write_manifest(model, report, folder)
    return report


def _require_packages() -> None:
    """Raise ExportError naming the first package of ``REQUIRED_PACKAGES`` that does not import."""
    for name in REQUIRED_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ExportError(
                f"ONNX export needs the {name} package, which is not installed: pip install 'sam2tool[export]'"
            ) from error


def _check_model(model: nn.Module, image_size: int) -> None:
    """Raise ExportError for a model whose layout the two graphs do not reproduce."""
    model_size = getattr(model, "image_size", image_size)
    if model_size != image_size:
        raise ExportError(f"ONNX export: image_size {image_size} differs from the model's input size {model_size}")
    parameter = next(model.parameters(), None)
    if parameter is not None and (parameter.device.type != "cpu" or parameter.dtype != torch.float32):
        raise ExportError(
            f"ONNX export needs the model in float32 on the CPU, not {parameter.dtype} on {parameter.device}: "
            "call model.float().cpu() first"
        )
    if not getattr(model, "use_high_res_features_in_sam", False) or getattr(model, "num_feature_levels", 0) != 3:
        raise ExportError(
            "ONNX export needs a SAM 2 model whose mask decoder uses high-resolution features "
            "(use_high_res_features_in_sam and 3 feature levels), as every official SAM 2 and 2.1 model does"
        )


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule of ``model`` in eval mode, and restore each one's mode afterwards."""
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _attribute(model: nn.Module, name: str) -> Any:
    """``getattr(model, name)``, untyped: SAM2Base's attributes are not annotated."""
    return getattr(model, name)


def _graphs(model: nn.Module, image_size: int) -> list[GraphSpec]:
    """The two image wrappers, in eval mode (as are the model's modules they share), with their shapes."""
    s = image_size
    width = int(_attribute(model, "sam_prompt_encoder").embed_dim)
    features: dict[str, Shape] = {
        "image_embed": [1, width, s // 16, s // 16],
        "high_res_feats_0": [1, width // 8, s // 4, s // 4],
        "high_res_feats_1": [1, width // 4, s // 8, s // 8],
    }
    prompts: dict[str, Shape] = {
        "point_coords": [1, NUM_POINTS, 2],
        "point_labels": [1, NUM_POINTS],
        "mask_input": [1, 1, s // 4, s // 4],
        "has_mask_input": [1],
    }
    decoded: dict[str, Shape] = {
        "masks": [1, 4, s // 4, s // 4],
        "iou_predictions": [1, 4],
        "object_score_logits": [1, 1],
    }
    raw: dict[str, Shape] = {
        "vision_features": [1, width, s // 16, s // 16],
        "vision_pos_enc": [1, width, s // 16, s // 16],
    }
    return [
        GraphSpec(IMAGE_ENCODER_FILE, ImageEncoderGraph(model).eval(), {"image": [1, 3, s, s]}, {**features, **raw}),
        GraphSpec(MASK_DECODER_FILE, MaskDecoderGraph(model).eval(), {**features, **prompts}, decoded),
    ]


def _random_inputs(
    shapes: Mapping[str, Shape], image_size: int, num_points: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random values of the right range for each input: images in [0, 1], points inside the image."""
    inputs: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        size = [num_points if isinstance(dim, str) else dim for dim in shape]
        if name == "image":
            inputs[name] = torch.rand(size, generator=generator)
        elif name == "point_coords":
            inputs[name] = torch.rand(size, generator=generator) * image_size
        elif name == "point_labels":
            inputs[name] = _point_labels(num_points)
        elif name == "has_mask_input":
            inputs[name] = torch.ones(size)
        else:
            inputs[name] = torch.randn(size, generator=generator)
    return inputs


def _point_labels(num_points: int) -> torch.Tensor:
    """One positive click, or a box followed by a positive click, a negative click and a padding point."""
    labels = [1.0] if num_points == 1 else [_BOX_AND_CLICKS[i % len(_BOX_AND_CLICKS)] for i in range(num_points)]
    return torch.tensor([labels])


def _export_graph(graph: GraphSpec, path: Path, example: Mapping[str, torch.Tensor], opset: int) -> None:
    """Export one wrapper into one self-contained file (external data only past ONNX's 2 GB limit)."""
    dims = {
        dim: torch.export.Dim(dim, min=graph.dynamic_minimum.get(dim, 1)) for _, _, dim in _dynamic_axes(graph.inputs)
    }
    dynamic = {name: {axis: dims[dim]} for name, axis, dim in _dynamic_axes(graph.inputs)}
    try:
        with warnings.catch_warnings(), torch.no_grad(), _quiet_loggers("onnx_ir", "onnxscript"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph.module,
                tuple(example[name] for name in graph.inputs),
                input_names=list(graph.inputs),
                output_names=list(graph.outputs),
                dynamic_shapes={name: dynamic.get(name) for name in graph.inputs} if dynamic else None,
                opset_version=opset,
                dynamo=True,
                verbose=False,
            )
            if program is None:
                raise RuntimeError("torch.onnx.export returned no ONNX program")
            program.save(path)
    except Exception as error:  # any exporter failure becomes one sentence naming the graph
        raise ExportError(f"ONNX export of {graph.file} failed: {_root_cause(error)}") from error


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from these loggers inside the block (the exporter's passes warn about constant outputs)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _root_cause(error: BaseException) -> str:
    """``"Type: first line"`` of the innermost cause (torch.onnx wraps the real error in generic ones)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = _ANSI_ESCAPE.sub("", str(error)).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _dynamic_axes(shapes: Mapping[str, Shape]) -> list[tuple[str, int, str]]:
    """``(input, axis, axis name)`` of every dynamic axis."""
    return [
        (name, axis, dim) for name, shape in shapes.items() for axis, dim in enumerate(shape) if isinstance(dim, str)
    ]


def _check_graphs(
    graphs: Sequence[GraphSpec],
    folder: Path,
    results: Sequence[OnnxGraphCheck],
    image_size: int,
    generator: torch.Generator,
) -> None:
    """Compare every graph with PyTorch; the others get the encoder's PyTorch outputs of new images."""
    encoder, decoder, *tracking = graphs
    encoder_cases = [_random_inputs(encoder.inputs, image_size, 1, generator) for _ in _CHECK_CASES]
    features = _compare(encoder, folder, encoder_cases, results[0])
    decoder_cases = []
    for (num_points, has_mask), encoded in zip(_CHECK_CASES, features, strict=True):
        case = _random_inputs(decoder.inputs, image_size, num_points, generator)
        case.update({name: value for name, value in encoded.items() if name in decoder.inputs})
        case["has_mask_input"] = torch.full((1,), float(has_mask))
        decoder_cases.append(case)
    _compare(decoder, folder, decoder_cases, results[1])
    for graph, result in zip(tracking, results[2:], strict=True):
        assert graph.make_case is not None
        _compare(graph, folder, [graph.make_case(encoded, i, generator) for i, encoded in enumerate(features)], result)


def _compare(
    graph: GraphSpec, folder: Path, cases: Sequence[Mapping[str, torch.Tensor]], result: OnnxGraphCheck
) -> list[dict[str, torch.Tensor]]:
    """Run the file with onnxruntime on each case, record the max |ort - torch|, raise past the tolerance.

    Returns:
        The PyTorch outputs of each case, by output name.

    """
    onnxruntime = importlib.import_module("onnxruntime")
    session = onnxruntime.InferenceSession(str(folder / graph.file), providers=["CPUExecutionProvider"])
    expected_outputs = []
    for case in cases:
        with torch.no_grad():
            expected = dict(zip(graph.outputs, graph.module(*(case[name] for name in graph.inputs)), strict=True))
        actual = session.run(list(graph.outputs), {name: case[name].numpy() for name in graph.inputs})
        for name, got in zip(graph.outputs, actual, strict=True):
            want = expected[name].numpy()
            result.max_abs_diff[name] = _worst(float(np.max(np.abs(got - want))), result.max_abs_diff.get(name, 0.0))
            result.max_abs_value[name] = _worst(float(np.max(np.abs(want))), result.max_abs_value.get(name, 0.0))
        expected_outputs.append(expected)
    _raise_if_failed(result)
    return expected_outputs


def _worst(a: float, b: float) -> float:
    """The larger of two maxima; NaN when either is NaN (a NaN output must fail the check)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _raise_if_failed(result: OnnxGraphCheck) -> None:
    """Raise ExportError naming the first output whose difference exceeds the tolerance (or is NaN)."""
    for name, diff in result.max_abs_diff.items():
        if not diff <= result.tolerance:
            raise ExportError(
                f"ONNX check of {result.file} failed: output {name!r} differs from PyTorch by up to {diff:.3g} "
                f"(tolerance {result.tolerance:g})"
            )


def _tensors_json(shapes: Mapping[str, Shape], int64: Sequence[str] = ()) -> list[dict[str, Any]]:
    """``[{"name", "dtype", "shape"}]`` of a graph's inputs or outputs."""
    return [
        {"name": name, "dtype": "int64" if name in int64 else "float32", "shape": list(shape)}
        for name, shape in shapes.items()
    ]
