"""sam2tool: fine-tune, evaluate, export and run SAM 2 / SAM 2.1 on your own videos."""

__version__ = "0.2.0"
