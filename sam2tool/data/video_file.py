"""Reading video files frame by frame with OpenCV, in order, without holding the video."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sam2tool.data.images import ImageProblem


class VideoFileReader:
    """Sequential OpenCV decoding with forward seeking; reopens only to go backwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.capture: cv2.VideoCapture | None = None
        self.position = 0

    def close(self) -> None:
        """Release the video file (the next read reopens it)."""
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    def frame_count(self) -> int:
        """Frame count the container declares (0 when it does not say)."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8; raises ImageProblem naming the video when it cannot."""
        if self.capture is None or index < self.position:
            self.close()
            self.capture = cv2.VideoCapture(str(self.path))
            self.position = 0
            if not self.capture.isOpened():
                raise ImageProblem(f"video {self.path.name} cannot be opened; is it a video file OpenCV can read?")
        while self.position < index:
            if not self.capture.grab():
                raise ImageProblem(f"video {self.path.name} ends before frame {index}")
            self.position += 1
        ok, bgr = self.capture.read()
        self.position += 1
        if not ok or bgr is None:
            raise ImageProblem(f"video {self.path.name}: frame {index} cannot be decoded")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
