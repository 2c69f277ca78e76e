"""Developer tasks: `nox` runs lint, typecheck and tests; `nox -s tests` is the README test command.

The sam2 release on PyPI is a source distribution whose build imports torch, so every session
that needs sam2 installs torch and torchvision first, then sam2 without build isolation. The CUDA
extension of sam2 (hole filling in masks) is only built where a GPU and nvcc are present; set
SAM2_BUILD_CUDA=1 or 0 to decide yourself.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_venv = "yes"


def _build_cuda() -> str:
    if "SAM2_BUILD_CUDA" in os.environ:
        return os.environ["SAM2_BUILD_CUDA"]
    has_gpu = shutil.which("nvidia-smi") is not None
    return "1" if has_gpu and shutil.which("nvcc") is not None else "0"


def install_project(session: nox.Session, extras: str | None = "dev") -> None:
    """Install torch, then sam2 (needs torch to build), then sam2tool and its extras.

    setuptools and wheel go in with torch: sam2 builds with them without build isolation, and
    virtual environments of Python 3.12+ no longer contain setuptools.
    """
    session.install("setuptools", "wheel", "torch>=2.5.1", "torchvision>=0.20.1")
    session.install("--no-build-isolation", "sam2>=1.1.0,<1.2", env={"SAM2_BUILD_CUDA": _build_cuda()})
    session.install("-e", f".[{extras}]" if extras else ".")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (default selection: not slow, not gpu). Extra args go to pytest."""
    install_project(session)
    session.run("pytest", *(session.posargs or []), env={"PYTHONHASHSEED": "0"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", "sam2tool", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "sam2tool", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy (strict) on the package."""
    install_project(session)
    session.run("mypy")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every script in benchmarks/ (they print measured figures; nothing is asserted)."""
    install_project(session)
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *session.posargs)


#: Where `nox -s demo` leaves everything it made (the README names this folder).
DEMO = Path("demo_output")
#: The demo's data: 20 generated videos of 16 frames at 128 px, one moving textured object each
#: (a 1.3 M-parameter model trained from random weights learns one object per video in minutes;
#: telling several objects apart from memory takes it far longer), 5 of them held out.
DEMO_DATA = ["--num-videos", "20", "--frames", "16", "--size", "128", "--objects", "1", "--val-fraction", "0.25"]
#: The micro preset (900 steps), validated every 60 steps (epochs of 15 training videos x 4).
DEMO_TRAINING = ["dataset.multiplier=4", "trainer.log_every_n_steps=5"]
#: How much J&F must improve for the demo to pass (it prints the table either way).
DEMO_MIN_GAIN = 0.25


@nox.session
def demo(session: nox.Session) -> None:
    """The whole loop on a CPU in minutes: data, train, evaluate before/after, export, predict."""
    install_project(session, extras=None)
    shutil.rmtree(DEMO, ignore_errors=True)
    data, config = DEMO / "data", DEMO / "micro.yaml"
    session.run("sam2tool", "prepare-data", str(data), "--format", "synthetic", *DEMO_DATA)
    session.run("sam2tool", "init-config", str(config), "--preset", "micro")
    session.log(f"Setting dataset.root: {data} in {config}")
    config.write_text(config.read_text().replace("  root: null\n", f"  root: {data}\n", 1))
    session.run("sam2tool", "validate-config", "--check-paths", str(config))
    runs = DEMO / "runs"
    session.run("sam2tool", "train", "--config", str(config), *DEMO_TRAINING, "--output-dir", str(runs))
    (checkpoint,) = glob.glob(str(runs / "*" / "*" / "checkpoints" / "last.ckpt"))
    session.run(
        "sam2tool", "evaluate", "--config", str(config), "--checkpoint", checkpoint, "--baseline",
        "--output", str(DEMO / "evaluation"),
    )  # fmt: skip
    session.run("sam2tool", "export", checkpoint, "--output", str(DEMO / "export"), "--format", "sam2,safetensors")
    held_out = (data / "splits" / "val.txt").read_text().split()
    video = held_out[0]
    session.run(
        "sam2tool", "predict-video", str(data / "JPEGImages" / video), "--output", str(DEMO / "predictions"),
        "--checkpoint", str(DEMO / "export" / "model.pt"),
        "--mask", str(data / "Annotations" / video / "00000.png"), "--overlay",
        "--save-video", str(DEMO / "predictions.mp4"),
    )  # fmt: skip
    comparison = json.loads((DEMO / "evaluation" / "comparison.json").read_text())
    before, after = comparison["baseline"]["J&F"], comparison["finetuned"]["J&F"]
    session.log(f"J&F on the {len(held_out)} held-out videos: before {before:.3f}, after {after:.3f}")
    session.log(f"Results are in {DEMO}/: evaluation/comparison.png, predictions.mp4, export/, runs/ (see README)")
    if after < before + DEMO_MIN_GAIN:
        session.error(f"fine-tuning gained {after - before:+.3f} J&F, less than the {DEMO_MIN_GAIN} the demo expects")
