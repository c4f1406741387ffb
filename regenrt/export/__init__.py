"""Export: PyTorch -> ONNX (FP32), the FP16 graph, and the parity gate that guards every artefact."""
