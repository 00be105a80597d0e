"""`specbuild predict`: a checkpoint's predictions for files.

A checkpoint holds the spec and the weights, so the model is rebuilt from the
spec and the weights loaded (never unpickled).  `predict` reads arrays from
`.npz`/`.pt` files or images (PNG, JPEG...), prepared as in training: resized
to the input's shape and normalised with the training data's statistics.
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import torch

from ..compiler.compile import build_model
from ..data.tensors import DataError
from .evaluate import load_predictor
from .objectives import outputs_probabilities
from .session import pick_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def predict(checkpoint: str, inputs: list[str], *, device="auto") -> list[dict]:
    """One row per sample: its source, and the model's outputs (class and probabilities, or values)."""
    device = pick_device(device)
    state, checked, network = load_predictor(checkpoint, "predict")
    graph = checked.graphs.networks[network]
    model = build_model(checked, network=network)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    spec_in = list(graph.inputs.values())
    arrays, sources = _read_inputs(inputs, spec_in, state.get("data_info") or {})
    with torch.no_grad():
        outputs = model(*[a.to(device) for a in arrays])
    # column prefixes: the output's key (dict outputs) or node name (tuple outputs); none for one output
    if isinstance(graph.outputs, dict):
        named = {key: (outputs[key], node) for key, node in graph.outputs.items()}
    elif isinstance(graph.outputs, list):
        named = {node: (value, node) for node, value in zip(graph.outputs, outputs)}
    else:
        named = {"output": (outputs, graph.outputs)}
    rows = []
    for i, source in enumerate(sources):
        row = {"source": source}
        for key, (value, node_name) in named.items():
            prefix = "" if len(named) == 1 else f"{key}_"
            sample = value[i].float().cpu().reshape(-1)
            node = graph.nodes.get(node_name)
            if outputs_probabilities(node) and sample.numel() > 1:
                row[prefix + "class"] = int(sample.argmax())
                row.update({f"{prefix}p{j}": round(float(p), 6) for j, p in enumerate(sample)})
            else:
                row.update({f"{prefix}{j}" if sample.numel() > 1 else prefix + "value": round(float(v), 6)
                            for j, v in enumerate(sample)})
        rows.append(row)
    return rows


def _read_inputs(paths: list[str], spec_in: list, data_info: dict):
    images = [p for p in paths if p.lower().endswith(IMAGE_SUFFIXES)]
    if images:
        if len(images) != len(paths) or len(spec_in) != 1:
            raise DataError("give either image files for a one-input model, or one .npz/.pt file", path="predict")
        return [_read_images(images, spec_in[0], data_info)], [os.path.basename(p) for p in images]
    if len(paths) != 1:
        raise DataError("give one .npz or .pt file holding the inputs", path="predict")
    path = paths[0]
    if not os.path.exists(path):
        raise DataError(f"no such file: {path}", path="predict")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            found = {k: torch.from_numpy(archive[k]) for k in archive.files}
    elif path.endswith((".pt", ".pth")):
        found = torch.load(path, map_location="cpu", weights_only=True)
        found = found if isinstance(found, dict) else {"x": found}
    else:
        raise DataError(f"cannot read {path}: predict takes .npz, .pt or image files", path="predict")
    arrays = []
    for i, spec_input in enumerate(spec_in):
        array = found.get(spec_input.name)
        if array is None and len(found) == len(spec_in):
            array = list(found.values())[i]
        if array is None:
            raise DataError(f"{path} has no array named {spec_input.name!r}", path="predict",
                            hint="name the arrays after the spec's inputs: " + ", ".join(s.name for s in spec_in))
        want = tuple(spec_input.shape or ())
        array = torch.as_tensor(array)
        if tuple(array.shape) == want:
            array = array.unsqueeze(0)
        if array[0].numel() != int(np.prod(want)):
            raise DataError(f"{spec_input.name} samples have shape {list(array.shape[1:])}, the spec wants {list(want)}",
                            path="predict")
        arrays.append(array.reshape((array.shape[0],) + want).to(spec_input.torch_dtype(array)))
    return arrays, [f"{os.path.basename(path)}[{i}]" for i in range(arrays[0].shape[0])]


def _read_images(paths: list[str], spec_input, data_info: dict) -> torch.Tensor:
    from PIL import Image
    shape = tuple(spec_input.shape or ())
    channels, height, width = (shape if len(shape) == 3 else (1, 28, 28) if int(np.prod(shape)) == 784 else (None,) * 3)
    if channels is None:
        raise DataError(f"input {spec_input.name} {list(shape)} is not an image", path="predict")
    norm = data_info.get("normalize") or {}
    batch = []
    for path in paths:
        image = Image.open(path).convert("L" if channels == 1 else "RGB").resize((width, height))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)
        x = x.unsqueeze(0) if channels == 1 else x.permute(2, 0, 1)
        mean = torch.tensor(norm.get("mean", 0.0)).reshape(-1, 1, 1)
        std = torch.tensor(norm.get("std", 1.0)).reshape(-1, 1, 1)
        batch.append(((x - mean) / std).reshape(shape))
    return torch.stack(batch)


def write_predictions(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
