"""An ONNX export folder for video tracking: its manifest, its graphs, and the checks before tracking.

``sam2tool export --format onnx`` writes six graphs and ``onnx_manifest.json`` beside them (see
:mod:`sam2tool.export.onnx_export`). :func:`open_bundle` reads the manifest, checks that every
graph is there and is the one the manifest names (SHA-256), and opens each with onnxruntime. It
needs only onnxruntime and numpy: this module never imports torch.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2tool.errors import UsageError

MANIFEST_FILE = "onnx_manifest.json"
#: What the manifest's ``format`` says, and the layout version this runtime reads.
MANIFEST_FORMAT = "sam2tool-onnx-tracker"
MANIFEST_VERSION = 1
#: Graph role -> file name. The first two are the single-image graphs; all six track videos.
GRAPH_FILES = {
    "image_encoder": "image_encoder.onnx",
    "mask_decoder": "mask_decoder.onnx",
    "memory_attention": "memory_attention.onnx",
    "memory_encoder": "memory_encoder.onnx",
    "video_decoder": "video_decoder.onnx",
    "mask_prompt": "mask_prompt.onnx",
}
#: The graphs tracking runs (``mask_decoder`` serves single images).
TRACKING_GRAPHS = ("image_encoder", "memory_attention", "memory_encoder", "video_decoder", "mask_prompt")
#: Settings of the model that the tracker applies outside the graphs (all in the manifest's ``tracking``).
TRACKING_KEYS = (
    "num_maskmem",
    "max_obj_ptrs_in_encoder",
    "memory_temporal_stride_for_eval",
    "max_cond_frames_in_attn",
    "only_obj_ptrs_in_the_past_for_eval",
    "use_signed_tpos_enc_to_obj_ptrs",
    "multimask_output_in_sam",
    "multimask_output_for_tracking",
    "multimask_min_pt_num",
    "multimask_max_pt_num",
)
EXPORT_HINT = "run `sam2tool export CHECKPOINT --format onnx --output DIR` and pass DIR"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class OnnxBundle:
    """An opened export folder.

    Attributes:
        folder: The export folder.
        manifest: The manifest as written by ``export``.
        sessions: Graph role -> onnxruntime ``InferenceSession`` (the tracking graphs).
        image_size: The model's input size ``S``.
        tracking: The manifest's ``tracking`` settings.

    """

    folder: Path
    manifest: dict[str, Any]
    sessions: dict[str, Any]

    @property
    def image_size(self) -> int:
        """The model's input size ``S``."""
        return int(self.manifest["image_size"])

    @property
    def tracking(self) -> dict[str, Any]:
        """The settings the tracker applies outside the graphs."""
        tracking: dict[str, Any] = self.manifest["tracking"]
        return tracking


def require_onnxruntime() -> Any:
    """The onnxruntime module, or a UsageError naming the extra that installs it."""
    try:
        return importlib.import_module("onnxruntime")
    except ImportError:
        raise UsageError(
            "--backend onnxruntime needs the onnxruntime package, which is not installed: "
            "pip install 'sam2tool[export]' (or pip install onnxruntime)"
        ) from None


def onnx_providers(device: str) -> list[str]:
    """The onnxruntime execution providers for ``--device`` (auto: CUDA when onnxruntime has it, else the CPU).

    Raises:
        UsageError: onnxruntime is missing, or the device is not one it can use here.

    """
    available = require_onnxruntime().get_available_providers()
    cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda:
        raise UsageError(
            "--device cuda: this onnxruntime has no CUDA execution provider; pip install onnxruntime-gpu, "
            "or use --device cpu"
        )
    if device == "mps":
        raise UsageError("--device mps: the onnxruntime backend runs on cpu or cuda; use --device cpu")
    if device in ("auto", "cuda") and cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of an export folder, checked for the keys the tracker reads.

    Raises:
        UsageError: ``folder`` is a file (a training checkpoint?), or has no readable manifest.

    """
    if folder.is_file():
        raise UsageError(f"--backend onnxruntime takes an ONNX export folder, not the file {folder}; {EXPORT_HINT}")
    if not folder.is_dir():
        raise UsageError(f"ONNX export folder {folder} does not exist; {EXPORT_HINT}")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise UsageError(f"{folder} has no {MANIFEST_FILE}, so it is not an ONNX export for tracking; {EXPORT_HINT}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); export again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UsageError(f"{path} is not a sam2tool ONNX manifest (format {MANIFEST_FORMAT!r}); export again")
    if manifest.get("version") != MANIFEST_VERSION:
        raise UsageError(
            f"{path} has layout version {manifest.get('version')!r}; this sam2tool reads version "
            f"{MANIFEST_VERSION}: export again with this sam2tool"
        )
    missing = [key for key in TRACKING_KEYS if key not in manifest.get("tracking", {})]
    graphs = manifest.get("graphs", {})
    missing += [f"graphs.{role}" for role in TRACKING_GRAPHS if role not in graphs]
    if missing or "image_size" not in manifest:
        raise UsageError(f"{path} lacks {', '.join(missing) or 'image_size'}; export again")
    return manifest


def open_bundle(folder: Path, providers: list[str] | None = None) -> OnnxBundle:
    """Read the manifest, check every tracking graph against it, and open the graphs with onnxruntime.

    Args:
        folder: An export folder written by ``sam2tool export --format onnx``.
        providers: onnxruntime execution providers, in order of preference (default: the CPU).

    Raises:
        UsageError: onnxruntime is missing, the folder is not an export, a graph is missing, or a
            graph's SHA-256 differs from the manifest's (graphs of two exports mixed).

    """
    ort = require_onnxruntime()
    manifest = read_manifest(folder)
    sessions: dict[str, Any] = {}
    for role in TRACKING_GRAPHS:
        entry = manifest["graphs"][role]
        path = folder / str(entry["file"])
        if not path.is_file():
            raise UsageError(f"{folder} has no {entry['file']} (listed in {MANIFEST_FILE}); export again")
        if file_sha256(path) != entry["sha256"]:
            raise UsageError(
                f"{path} is not the graph {MANIFEST_FILE} names (SHA-256 differs): graphs of different exports "
                "are mixed; copy the whole export folder again"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        # Idle threads sleep instead of spinning: between runs numpy works on the same cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions[role] = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    return OnnxBundle(folder, manifest, sessions)
