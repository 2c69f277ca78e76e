"""Readers of annotation formats; this module only names them (so --help stays light)."""

from __future__ import annotations

#: Format name -> one-line description of the source layout it reads.
FORMATS: dict[str, str] = {
    "davis": "DAVIS 2016/2017 (JPEGImages/480p/<video>/, Annotations/480p/<video>/, ImageSets/)",
    "ytvos": "YouTube-VOS / MOSE (JPEGImages/<video>/, Annotations/<video>/, optional meta.json)",
    "sav": "SA-V (<video>.mp4 + <video>_manual.json masklets, 24 fps video annotated at 6 fps)",
    "coco": "COCO instances JSON (polygons and RLE) as SOURCE; images via --images or beside it",
    "synthetic": "generated videos of textured moving objects (--num-videos, --frames, --size, --objects, --style)",
}

#: Styles of the synthetic format (``--style``) -> what they look like.
SYNTHETIC_STYLES: dict[str, str] = {
    "shapes": "objects of well-separated colours over a smooth background (the packaged base's pretraining data)",
    "camouflage": "objects coloured and patterned like a cluttered background (a domain the base has not seen)",
}
