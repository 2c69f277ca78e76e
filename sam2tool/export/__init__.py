"""Exporters: sam2 checkpoint + YAML, safetensors, ONNX."""
