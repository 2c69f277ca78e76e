"""Readers of annotation formats, registered in the order ``--help`` lists them.

Each module here imports light (no numpy, no OpenCV: the reading code imports them when it runs),
because ``--help`` lists the formats and their options. Adding a format: a module with a
:class:`~sam2tool.data.formats.base.SourceFormat` subclass, and one line below.
"""

from __future__ import annotations

from sam2tool.data.formats.coco import CocoFormat
from sam2tool.data.formats.davis import DavisFormat
from sam2tool.data.formats.registry import FORMATS, get_format, register
from sam2tool.data.formats.sav import SavFormat
from sam2tool.data.formats.synthetic import SyntheticFormat
from sam2tool.data.formats.ytvos import YouTubeVOSFormat

__all__ = ["FORMATS", "get_format", "register"]

register(DavisFormat)
register(YouTubeVOSFormat)
register(SavFormat)
register(CocoFormat)
register(SyntheticFormat)
