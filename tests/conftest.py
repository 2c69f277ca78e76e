"""Shared fixtures and factories: an isolated environment, a micro model, a local HTTP server, micro runs."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sam2tool.config.loading import load_settings
from sam2tool.config.schema import ModelSettings, Sam2ToolSettings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SAM2TOOL_* variables from the developer's shell; a private checkpoint cache."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("SAM2TOOL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def micro_settings() -> ModelSettings:
    """The micro architecture with random weights."""
    return ModelSettings(size="micro", checkpoint=None)


class FileServer:
    """A tiny HTTP server on 127.0.0.1 serving byte strings at paths, with failure modes."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def prepare_synthetic(
    folder: Path, videos: int = 3, frames: int = 6, size: int = 64, val_fraction: float = 0.4
) -> Path:
    """Run ``sam2tool prepare-data`` for a small synthetic data set; return the folder."""
    from typer.testing import CliRunner

    from sam2tool.cli import app

    command = ["prepare-data", str(folder), "-f", "synthetic", "--num-videos", str(videos), "--frames", str(frames)]
    result = CliRunner().invoke(app, [*command, "--size", str(size), "--val-fraction", str(val_fraction)])
    assert result.exit_code == 0, result.output
    return folder


#: Runs that start from the packaged base use the size it was pretrained at.
BASE_SIZE = 128

#: sam2tool 0.1's micro: a 64-wide hidden state and a 16-wide memory (object pointers in 4 tokens).
OLD_MICRO = (
    "++model.image_encoder.trunk.embed_dim=16",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_spec=[4,4,4,4]",
    "++model.image_encoder.neck.d_model=64",
    "++model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "++model.memory_attention.d_model=64",
    "++model.memory_attention.num_layers=1",
    "++model.memory_attention.layer.d_model=64",
    "++model.memory_attention.layer.dim_feedforward=128",
    "++model.memory_attention.layer.self_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.embedding_dim=64",
    "++model.memory_attention.layer.cross_attention.kv_in_dim=16",
    "++model.memory_encoder.out_dim=16",
    "++model.memory_encoder.position_encoding.num_pos_feats=16",
    "++model.memory_encoder.mask_downsampler.embed_dim=64",
    "++model.memory_encoder.fuser.layer.dim=64",
    "++model.memory_encoder.fuser.num_layers=1",
    "++model.memory_encoder.in_dim=64",
)


def old_micro(image_size: int):  # type: ignore[no-untyped-def]
    """sam2tool 0.1's micro (``OLD_MICRO``) with random weights, a ``SAM2Base``."""
    from dataclasses import replace

    from sam2tool.config.registry import get_spec
    from sam2tool.models.build import compose_model_config, instantiate_model

    spec = replace(get_spec("sam2.1", "micro"), overrides=OLD_MICRO)
    return instantiate_model(compose_model_config(spec, image_size))


#: The image size of a micro training run on the CPU (``micro_run_settings``); generate its data at this size.
RUN_SIZE = 64


def micro_run_settings(data: Path, output: Path, *overrides: str, cpu: bool = True) -> Sam2ToolSettings:
    """The settings of a micro training run: the micro model with random weights, data at ``data``.

    The run trains for a number of steps on one device and writes below ``output``. With ``cpu`` (the
    default) it is the run of the CPU tests, a training step in well under a second: 64 px, 3-frame clips
    of up to 2 objects, no data workers, 4 steps at lr 1e-3 (1 warm-up step) validated every 2, logged
    and checkpointed at every step, drop-path 0.1. Without ``cpu`` all of these keep the schema's
    defaults, except that the caller gives the device and the number of steps. ``overrides``
    (``section.key=value``) come last and win.
    """
    cpu_run = [
        "model.drop_path_rate=0.1",
        f"dataset.image_size={RUN_SIZE}",
        "dataset.video_clip_length=3",
        "dataset.max_num_objects=2",
        "dataset.num_workers=0",
        "trainer.accelerator=cpu",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "optimizer.lr=1e-3",
        "scheduler.warmup_steps=1",
        "output.checkpoint_every_n_steps=1",
    ]
    run = [
        "model.size=micro",
        "model.checkpoint=null",
        f"dataset.root={data}",
        "dataset.multiplier=4",
        "trainer.devices=1",
        "trainer.max_epochs=null",
        "logging.progress=false",
        f"output.dir={output}",
    ]
    return load_settings(None, [*run, *(cpu_run if cpu else []), *overrides])


@pytest.fixture(scope="session")
def base_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four generated videos of 8 frames at the base's size, two of them held out."""
    return prepare_synthetic(
        tmp_path_factory.mktemp("base") / "data", videos=4, frames=8, size=BASE_SIZE, val_fraction=0.5
    )


@pytest.fixture(scope="session")
def fine_tuned_base(base_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Two fine-tuning steps of the packaged base, validated at the end: a checkpoint that tracks.

    Returns ``(TrainResult, settings)``.
    """
    from sam2tool.services.train import train

    overrides = ("trainer.max_steps=2", "model.checkpoint=official", f"dataset.image_size={BASE_SIZE}")
    settings = micro_run_settings(base_data, tmp_path_factory.mktemp("base-runs"), *overrides)
    return train(settings), settings
