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
from typing import Any, NoReturn

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
    _check_fields(manifest, path)
    return manifest


#: Tracking settings that are JSON booleans (the others are integers).
_BOOLEAN_KEYS = {
    "only_obj_ptrs_in_the_past_for_eval",
    "use_signed_tpos_enc_to_obj_ptrs",
    "multimask_output_in_sam",
    "multimask_output_for_tracking",
}


def _check_fields(manifest: dict[str, Any], path: Path) -> None:
    """Raise a UsageError naming the first field of the manifest that is missing or of the wrong type."""

    def refuse(field: str, what: str) -> NoReturn:
        raise UsageError(f"{path}: {field} must be {what}; export again")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("image_size", "hidden_dim"):
        if not is_int(manifest.get(key)) or manifest[key] <= 0:
            refuse(key, "a positive integer")
    tracking = manifest.get("tracking")
    if not isinstance(tracking, dict):
        refuse("tracking", "a mapping of the tracking settings")
    for key in TRACKING_KEYS:
        value = tracking.get(key)
        if key in _BOOLEAN_KEYS and not isinstance(value, bool):
            refuse(f"tracking.{key}", "true or false")
        if key not in _BOOLEAN_KEYS and not is_int(value):
            refuse(f"tracking.{key}", "an integer")
    if tracking["num_maskmem"] < 1 or tracking["max_obj_ptrs_in_encoder"] < 1:
        refuse("tracking.num_maskmem and tracking.max_obj_ptrs_in_encoder", "at least 1")
    if tracking["max_cond_frames_in_attn"] not in (-1,) and tracking["max_cond_frames_in_attn"] < 2:
        refuse("tracking.max_cond_frames_in_attn", "-1 (all) or at least 2, as sam2 requires")
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict):
        refuse("graphs", "a mapping of graph entries")
    for role in TRACKING_GRAPHS:
        entry = graphs.get(role)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
            refuse(f"graphs.{role}", "an entry with its file name")
        if not isinstance(entry.get("sha256"), str):
            refuse(f"graphs.{role}.sha256", "the graph's SHA-256")


def open_bundle(folder: Path, providers: list[str] | None = None, threads: int | None = None) -> OnnxBundle:
    """Read the manifest, check every tracking graph against it, and open the graphs with onnxruntime.

    Args:
        folder: An export folder written by ``sam2tool export --format onnx``.
        providers: onnxruntime execution providers, in order of preference (default: the CPU).
        threads: Threads per graph (onnxruntime's default when None: one per physical core).

    Raises:
        UsageError: onnxruntime is missing, the folder is not an export, a graph is missing or
            is not the one the manifest names (SHA-256), onnxruntime cannot load a graph, or the
            CUDA provider was asked for and did not start.

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
                f"{path} is not the graph {MANIFEST_FILE} names (SHA-256 differs): another export's graph, or an "
                "incomplete or damaged copy; copy the whole export folder again"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        # Idle threads sleep instead of spinning: between runs numpy works on the same cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        wanted = providers or ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(path), options, providers=wanted)
        except Exception as exc:  # onnxruntime raises its own exception types, one per failure
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"onnxruntime {ort.__version__} cannot load {path} ({reason}); export again, or update onnxruntime"
            ) from None
        if wanted[0] == "CUDAExecutionProvider" and "CUDAExecutionProvider" not in session.get_providers():
            raise UsageError(
                f"onnxruntime's CUDA provider did not start for {path} (CUDA or cuDNN libraries missing?); "
                "use --device cpu"
            )
        sessions[role] = session
    return OnnxBundle(folder, manifest, sessions)
