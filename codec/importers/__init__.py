"""Importers: codecs brought in from elsewhere (CompressAI checkpoints, ONNX exports) as bitmatch packages."""
