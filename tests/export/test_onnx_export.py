"""ONNX export: the wrappers equal SAM2ImagePredictor, the graphs equal the wrappers, errors are clear."""

from __future__ import annotations

import ast
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sam2tool.config.schema import ModelSettings
from sam2tool.errors import ExportError
from sam2tool.export import onnx_export
from sam2tool.export.onnx_export import (
    IMAGE_ENCODER_FILE,
    MASK_DECODER_FILE,
    ImageEncoderGraph,
    MaskDecoderGraph,
    OnnxReport,
    export_onnx,
)
from sam2tool.models.build import build_model
from sam2tool.models.onnx_bundle import GRAPH_FILES, MANIFEST_FILE

ort = pytest.importorskip("onnxruntime")
# SAM2ImagePredictor's transforms call torch.jit.script.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

WRAPPER_TOLERANCE = 1e-5
ORT_TOLERANCE = 1e-4


def _micro(image_size: int) -> torch.nn.Module:
    return build_model(ModelSettings(size="micro", checkpoint=None), image_size).model.eval()


@pytest.fixture(scope="module")
def micro128() -> torch.nn.Module:
    return _micro(128)


Exported = tuple[torch.nn.Module, Path, OnnxReport]
_EXPORTS: dict[int, Exported] = {}


def _exported(size: int, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A micro model exported (and checked) at ``size`` px, once per test session."""
    if size not in _EXPORTS:
        model = _micro(size)
        folder = tmp_path_factory.mktemp(f"onnx{size}")
        _EXPORTS[size] = model, folder, export_onnx(model, size, folder)
    return _EXPORTS[size]


@pytest.fixture(params=[64, 128])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return _exported(int(request.param), tmp_path_factory)


@pytest.fixture
def exported64(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """The micro model and its export at 64 px, to replay checks on."""
    model, folder, _ = _exported(64, tmp_path_factory)
    return model, folder


# --- the PyTorch wrappers reproduce SAM2ImagePredictor ----------------------------------------


class Predictor:
    """SAM2ImagePredictor on an S x S uint8 image, and the wrappers on the same image."""

    def __init__(self, model: torch.nn.Module, seed: int = 0) -> None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        size = int(model.image_size)
        self.size = size
        self.model = model
        self.predictor = SAM2ImagePredictor(model)
        # The predictor's feature sizes are hard-coded for 1024 px.
        self.predictor._bb_feat_sizes = [(size // 4,) * 2, (size // 8,) * 2, (size // 16,) * 2]
        image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        self.predictor.set_image(image)
        self.image = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
        self.encoder = ImageEncoderGraph(model).eval()
        self.decoder = MaskDecoderGraph(model).eval()
        with torch.no_grad():
            self.features = self.encoder(self.image)

    def decode(
        self, coords: list[list[float]], labels: list[float], mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        mask_input = torch.zeros(1, 1, self.size // 4, self.size // 4) if mask is None else mask
        with torch.no_grad():
            return tuple(
                self.decoder(
                    *self.features[:3],
                    torch.tensor([coords], dtype=torch.float32),
                    torch.tensor([labels], dtype=torch.float32),
                    mask_input,
                    torch.tensor([0.0 if mask is None else 1.0]),
                )
            )

    def official(self, multimask: bool, **prompts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution logits (clamped to +-32 by the predictor) and IoU predictions."""
        _, ious, low_res = self.predictor._predict(multimask_output=multimask, return_logits=True, **prompts)
        return low_res, ious


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = WRAPPER_TOLERANCE) -> None:
    assert actual.shape == expected.shape
    diff = float((actual - expected).abs().max())
    assert diff <= tolerance, f"max abs diff {diff:.3g} > {tolerance:g}"


@pytest.fixture(scope="module")
def predictor(micro128: torch.nn.Module) -> Predictor:
    assert not micro128.sam_mask_decoder.dynamic_multimask_via_stability
    return Predictor(micro128)


def test_image_encoder_wrapper_equals_set_image(predictor: Predictor) -> None:
    image_embed, high_res_0, high_res_1, raw, position = predictor.features
    official = predictor.predictor._features
    assert_close(image_embed, official["image_embed"])
    assert_close(high_res_0, official["high_res_feats"][0])
    assert_close(high_res_1, official["high_res_feats"][1])
    # What tracking reads: the lowest level without no_mem_embed, and its positional encoding.
    normalised = (predictor.image - predictor.encoder.mean) / predictor.encoder.std
    with torch.no_grad():
        backbone = predictor.model.forward_image(normalised)
    assert_close(raw, backbone["backbone_fpn"][-1])
    assert_close(position, backbone["vision_pos_enc"][-1])
    assert not torch.allclose(raw, image_embed)
    size, width = predictor.size, predictor.model.sam_prompt_encoder.embed_dim
    assert list(image_embed.shape) == [1, width, size // 16, size // 16] == list(raw.shape) == list(position.shape)
    assert list(high_res_0.shape) == [1, width // 8, size // 4, size // 4]
    assert list(high_res_1.shape) == [1, width // 4, size // 8, size // 8]


def _compare_with_predictor(
    predictor: Predictor,
    coords: list[list[float]],
    labels: list[float],
    mask: torch.Tensor | None = None,
    **prompts: torch.Tensor | None,
) -> None:
    masks, ious, _ = predictor.decode(coords, labels, mask)
    for multimask, tokens in ((True, slice(1, 4)), (False, slice(0, 1))):
        low_res, official_ious = predictor.official(multimask, mask_input=mask, **prompts)
        assert_close(masks[:, tokens].clamp(-32.0, 32.0), low_res)
        assert_close(ious[:, tokens], official_ious)


def test_mask_decoder_wrapper_equals_predictor_with_points(predictor: Predictor) -> None:
    coords, labels = [[30.0, 40.5], [100.0, 12.0], [64.0, 64.0]], [1.0, 0.0, 1.0]
    points = torch.tensor([coords]), torch.tensor([labels], dtype=torch.int)
    _compare_with_predictor(predictor, coords, labels, point_coords=points[0], point_labels=points[1])


def test_mask_decoder_wrapper_equals_predictor_with_a_box_and_a_click(predictor: Predictor) -> None:
    box = [10.0, 20.0, 90.0, 110.0]
    _compare_with_predictor(
        predictor,
        [[10.0, 20.0], [90.0, 110.0]],
        [2.0, 3.0],
        point_coords=None,
        point_labels=None,
        boxes=torch.tensor([box]),
    )
    _compare_with_predictor(
        predictor,
        [[10.0, 20.0], [90.0, 110.0], [50.0, 60.0]],
        [2.0, 3.0, 1.0],
        point_coords=torch.tensor([[[50.0, 60.0]]]),
        point_labels=torch.tensor([[1]], dtype=torch.int),
        boxes=torch.tensor([box]),
    )


def test_mask_decoder_wrapper_equals_predictor_with_a_mask_input(predictor: Predictor) -> None:
    mask = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(3)) * 10.0
    coords, labels = [[70.0, 20.0], [5.0, 5.0]], [1.0, -1.0]
    _compare_with_predictor(
        predictor,
        coords,
        labels,
        mask,
        point_coords=torch.tensor([coords]),
        point_labels=torch.tensor([labels], dtype=torch.int),
    )


def test_mask_decoder_wrapper_object_score_equals_mask_decoder(predictor: Predictor) -> None:
    model = predictor.model
    coords, labels = torch.tensor([[[30.0, 40.0]]]), torch.tensor([[1]], dtype=torch.int)
    with torch.no_grad():
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        features = predictor.predictor._features
        *_, object_score = model.sam_mask_decoder(
            image_embeddings=features["image_embed"],
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=features["high_res_feats"],
        )
    assert_close(predictor.decode([[30.0, 40.0]], [1.0])[2], object_score)


# --- the exported graphs -----------------------------------------------------------------------


def _decoder_feed(features: dict[str, np.ndarray], size: int, num_points: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pattern = [1.0] if num_points == 1 else [2.0, 3.0, 1.0, 0.0, -1.0]  # a box first, then clicks and padding
    return {
        **features,
        "point_coords": (rng.random((1, num_points, 2)) * size).astype(np.float32),
        "point_labels": np.array([[pattern[i % len(pattern)] for i in range(num_points)]], dtype=np.float32),
        "mask_input": (rng.standard_normal((1, 1, size // 4, size // 4)) * 5).astype(np.float32),
        "has_mask_input": np.array([float(seed % 2)], dtype=np.float32),
    }


#: What ``export_onnx`` writes: the image graphs, the tracking graphs and the manifest.
EXPORTED_FILES = sorted([*GRAPH_FILES.values(), MANIFEST_FILE])


def test_export_writes_self_contained_image_graphs_that_match_torch(exported: Exported) -> None:
    model, folder, report = exported
    size = report.image_size
    assert sorted(path.name for path in folder.iterdir()) == EXPORTED_FILES
    assert size == model.image_size and report.ok
    encoder, decoder = ImageEncoderGraph(model).eval(), MaskDecoderGraph(model).eval()
    encoder_session = ort.InferenceSession(str(folder / IMAGE_ENCODER_FILE), providers=["CPUExecutionProvider"])
    decoder_session = ort.InferenceSession(str(folder / MASK_DECODER_FILE), providers=["CPUExecutionProvider"])

    image = np.random.default_rng(7).random((1, 3, size, size), dtype=np.float32)
    outputs = encoder_session.run(None, {"image": image})
    with torch.no_grad():
        expected = encoder(torch.from_numpy(image))
    for got, want in zip(outputs, expected, strict=True):
        assert_close(torch.from_numpy(got), want, ORT_TOLERANCE)

    features = {out.name: value for out, value in zip(encoder_session.get_outputs(), outputs, strict=True)}
    features = {name: features[name] for name in ("image_embed", "high_res_feats_0", "high_res_feats_1")}
    for num_points, seed in ((1, 1), (2, 2), (7, 3)):  # not the 3 points of the export, nor the check's 1 and 5 only
        feed = _decoder_feed(features, size, num_points, seed)
        with torch.no_grad():
            expected = decoder(*(torch.from_numpy(feed[item.name]) for item in decoder_session.get_inputs()))
        for got, want in zip(decoder_session.run(None, feed), expected, strict=True):
            assert_close(torch.from_numpy(got), want, ORT_TOLERANCE)


def test_report_json_lists_graph_shapes_and_diffs(exported: Exported) -> None:
    model, folder, report = exported
    size = model.image_size
    data = json.loads(json.dumps(report.to_json()))
    assert data["image_size"] == size and data["opset"] == onnx_export.DEFAULT_OPSET and data["ok"] is True
    assert [graph["file"] for graph in data["graphs"]] == list(GRAPH_FILES.values())
    for graph in data["graphs"]:
        session = ort.InferenceSession(str(folder / graph["file"]), providers=["CPUExecutionProvider"])
        assert [(t["name"], t["shape"]) for t in graph["inputs"]] == [(i.name, i.shape) for i in session.get_inputs()]
        assert [(t["name"], t["shape"]) for t in graph["outputs"]] == [(o.name, o.shape) for o in session.get_outputs()]
        assert set(graph["max_abs_diff"]) == {t["name"] for t in graph["outputs"]}
        assert all(0.0 <= diff <= graph["tolerance"] for diff in graph["max_abs_diff"].values())
    decoder = data["graphs"][1]
    assert decoder["inputs"][3] == {"name": "point_coords", "dtype": "float32", "shape": [1, "num_points", 2]}
    assert decoder["outputs"][0]["shape"] == [1, 4, size // 4, size // 4]


def test_export_without_check_reports_no_diffs_and_restores_training_mode(
    exported64: tuple[torch.nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, source = exported64
    monkeypatch.setattr(onnx_export, "_export_graph", _replay(source))
    model.train()
    model.memory_encoder.eval()
    try:
        report = export_onnx(model, 64, tmp_path, check=False)
        assert model.training and model.image_encoder.training and not model.memory_encoder.training
    finally:
        model.eval()
    assert all(graph.max_abs_diff == {} and graph.ok for graph in report.graphs)
    assert report.to_json()["graphs"][0]["checked"] is False
    assert sorted(path.name for path in tmp_path.iterdir()) == EXPORTED_FILES


# --- errors ------------------------------------------------------------------------------------


def _replay(source: Path, tamper: Callable[[Path], None] | None = None) -> Callable[..., None]:
    """An ``_export_graph`` that copies an earlier export (and tampers with the mask decoder)."""

    def export_graph(graph: onnx_export.GraphSpec, path: Path, *args: object) -> None:
        shutil.copy(source / graph.file, path)
        if tamper is not None and graph.file == MASK_DECODER_FILE:
            tamper(path)

    return export_graph


def _add_one_to_iou_predictions(path: Path) -> None:
    import onnx
    from onnx import helper

    model = onnx.load(str(path))
    for node in model.graph.node:
        node.output[:] = ["iou_raw" if name == "iou_predictions" else name for name in node.output]
    one = helper.make_node("Constant", [], ["one"], value=helper.make_tensor("one", onnx.TensorProto.FLOAT, [], [1.0]))
    model.graph.node.extend([one, helper.make_node("Add", ["iou_raw", "one"], ["iou_predictions"])])
    onnx.save(model, str(path))


def test_tampered_graph_fails_the_check(
    exported64: tuple[torch.nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, source = exported64
    monkeypatch.setattr(onnx_export, "_export_graph", _replay(source, _add_one_to_iou_predictions))
    with pytest.raises(ExportError, match=r"mask_decoder\.onnx.*'iou_predictions'.*by up to 1 \(tolerance 0\.001\)"):
        export_onnx(model, 64, tmp_path)


def test_impossible_tolerance_fails_the_check(
    exported64: tuple[torch.nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, source = exported64
    monkeypatch.setattr(onnx_export, "_export_graph", _replay(source))
    with pytest.raises(ExportError, match=r"check of image_encoder\.onnx failed: output 'image_embed'.*tolerance 0\)"):
        export_onnx(model, 64, tmp_path, tolerance=0.0)


def test_missing_onnxruntime_names_the_extra(
    exported64: tuple[torch.nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=r"onnxruntime.*pip install 'sam2tool\[export\]'"):
        export_onnx(exported64[0], 64, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_failing_export_names_the_graph_and_the_reason(
    exported64: tuple[torch.nn.Module, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ImageEncoderGraph, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(ImageEncoderGraph, "forward", broken)
    with pytest.raises(
        ExportError, match=r"^ONNX export of image_encoder\.onnx failed: RuntimeError: unsupported operator$"
    ):
        export_onnx(exported64[0], 64, tmp_path)


def test_wrong_image_size_is_refused(exported64: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="image_size 128 differs from the model's input size 64"):
        export_onnx(exported64[0], 128, tmp_path)


def test_half_precision_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match=r"float32 on the CPU, not torch.float16 on cpu: call model.float\(\).cpu\(\)"
    ):
        export_onnx(_micro(64).half(), 64, tmp_path)


def test_module_does_not_import_sam2_or_hydra() -> None:
    tree = ast.parse(Path(onnx_export.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in {"sam2", "hydra", "training"}}


# --- a real architecture -----------------------------------------------------------------------


@pytest.mark.slow
def test_export_sam21_tiny_at_1024(tmp_path: Path, record_property: Callable[[str, object], None]) -> None:
    model = build_model(ModelSettings(size="tiny", checkpoint=None), 1024).model.eval()
    start = time.perf_counter()
    report = export_onnx(model, 1024, tmp_path)
    seconds = time.perf_counter() - start
    record_property("seconds", round(seconds, 1))
    for graph in report.graphs:
        record_property(graph.file, {"max_abs_diff": graph.max_abs_diff, "max_abs_value": graph.max_abs_value})
        print(graph.file, graph.max_abs_diff, graph.max_abs_value)
    print(f"export + check: {seconds:.1f} s; sizes:", {p.name: p.stat().st_size for p in tmp_path.iterdir()})
    assert report.ok
    assert all(diff < onnx_export.DEFAULT_TOLERANCE / 10 for g in report.graphs for diff in g.max_abs_diff.values())
