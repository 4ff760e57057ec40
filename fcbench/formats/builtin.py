"""fcbench's own formats. Each is registered in ``pyproject.toml`` under ``fcbench.formats``
exactly as a third-party format is; nothing here imports torch or a runtime."""

from __future__ import annotations

import zipfile
from pathlib import Path

from fcbench.formats import CHECKPOINT as CHECKPOINT_NAME
from fcbench.formats import Format


def _torch_save(head: bytes, path: Path) -> bool:
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"  # torch.save's zip, or a legacy pickle


def _onnx(head: bytes, path: Path) -> bool:
    return len(head) > 2 and head[0] in (0x08, 0x0A, 0x12, 0x1A, 0x22, 0x3A, 0x42)  # protobuf field tags


def _tflite(head: bytes, path: Path) -> bool:
    return head[4:8] == b"TFL3"  # the flatbuffer file identifier


def _openvino(head: bytes, path: Path) -> bool:
    return head.lstrip().startswith(b"<?xml") or b"<net" in head


def _ptl(head: bytes, path: Path) -> bool:
    return zipfile.is_zipfile(path)


def _pte(head: bytes, path: Path) -> bool:
    return head[4:6] == b"ET"  # the flatbuffer identifier ET12, ET13, ...


CHECKPOINT = Format(
    name=CHECKPOINT_NAME, suffixes=(".pt",), order=10,
    description="fcbench checkpoint: a torch.save dict of weights and how to rebuild the model (made by train)",
    magic=_torch_save, backend="pytorch:eager",
)
ONNX = Format(
    name="onnx", suffixes=(".onnx",), order=20, description="ONNX model (protobuf)",
    magic=_onnx, exporter="fcbench.conversion.onnx:OnnxExporter", backend="onnxruntime:cpu",
    input_reader="fcbench.infer:onnx_input",
)
TFLITE = Format(
    name="tflite", suffixes=(".tflite",), order=30, description="LiteRT (TensorFlow Lite) flatbuffer",
    magic=_tflite, exporter="fcbench.conversion.tflite:TfliteExporter", backend="tflite:xnnpack",
    input_reader="fcbench.infer:tflite_input",
)
OPENVINO = Format(
    name="openvino", suffixes=(".xml",), order=40, description="OpenVINO IR: the .xml graph and its .bin weights",
    magic=_openvino, companion_suffixes=(".bin",), exporter="fcbench.conversion.openvino:OpenVinoExporter",
    backend="openvino:CPU", input_reader="fcbench.infer:openvino_input",
    parity_options={"precision": "f32"},  # OpenVINO CPU may run in bf16 by default; parity is of the f32 graph
)
PTL = Format(
    name="ptl", suffixes=(".ptl",), order=50, description="PyTorch Mobile lite-interpreter TorchScript",
    magic=_ptl, exporter="fcbench.conversion.ptl:PtlExporter", backend="pytorch-mobile:cpu",
)
PTE = Format(
    name="pte", suffixes=(".pte",), order=60,
    description="ExecuTorch program (for XNNPACK or portable kernels: extra.backend_variant)",
    magic=_pte, exporter="fcbench.conversion.pte:PteExporter", backend="executorch:xnnpack",
)
