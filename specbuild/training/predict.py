"""`specbuild predict`: a checkpoint's predictions for files.

A checkpoint holds the spec and the weights, so the model is rebuilt from the
spec and the weights loaded (never unpickled).  `predict` reads arrays from
`.npz`/`.pt` files or images (PNG, JPEG...), prepared as in training: resized
to the input's shape and normalised with the training data's statistics.
Everything is checked before the forward pass: the files, the arrays' names,
shapes and dtypes (token ids must be whole numbers within the Embedding's table).

Columns: `source`, then per output (prefixed by its key when there are several)
`class` for a classifier's output (the argmax of its scores, or probability >= 0.5
for one binary score) and `class_name` where the training data names its classes,
then `p0`, `p1`... when the output is probabilities, else
the raw values `0`, `1`... (or `value` for one number).  A classifier scoring every
position (a language model's [T, V]) gets one class per position instead: a list in
JSON, the ids separated by spaces in CSV.
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import torch

from ..compiler.compile import build_model
from ..data.files import read_arrays
from ..data.tensors import DataError, cast_input
from ..errors import did_you_mean
from .checkpoint import load_weights
from .evaluate import CLASS_KINDS, check_token_ids, load_predictor
from .objectives import build_objectives, outputs_probabilities
from .session import pick_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def predict(checkpoint: str, inputs: list[str], *, device="auto") -> list[dict]:
    """One row per sample: its source, and the model's outputs (class and probabilities, or values)."""
    device = pick_device(device)
    state, checked, network = load_predictor(checkpoint, "predict")
    graph = checked.graphs.networks[network]
    model = build_model(checked, network=network)
    load_weights(model, state["model"], checkpoint)
    model.to(device).eval()
    spec_in = list(graph.inputs.values())
    arrays, sources = _read_inputs(inputs, spec_in, state.get("data_info") or {})
    check_token_ids(model, graph, arrays, os.path.basename(inputs[0]), "predict")
    with torch.no_grad():
        outputs = model(*[a.to(device) for a in arrays])
    # column prefixes: the output's key (dict outputs) or node name (tuple outputs); none for one output
    if isinstance(graph.outputs, dict):
        named = {key: (outputs[key], node) for key, node in graph.outputs.items()}
    elif isinstance(graph.outputs, list):
        named = {node: (value, node) for node, value in zip(graph.outputs, outputs)}
    else:
        named = {"output": (outputs, graph.outputs)}
    kinds = _output_kinds(checked, graph, state)
    rows = []
    for i, source in enumerate(sources):
        row = {"source": source}
        for key, (value, node_name) in named.items():
            prefix = "" if len(named) == 1 else f"{key}_"
            kind, classes, names = kinds.get(node_name, (None, None, None))
            per_position = _per_position_classes(value[i], kind, classes)
            if per_position is not None:
                row[prefix + "class"] = per_position
                continue
            row.update(_columns(value[i].float().cpu().reshape(-1), prefix, graph.nodes.get(node_name), kind,
                                names))
        rows.append(row)
    return rows


def _columns(sample: torch.Tensor, prefix: str, node, kind: str | None, names: list | None = None) -> dict:
    """One sample's columns for one output: a class (and its name, where the data names them) for
    classifiers, then probabilities or raw values."""
    row = {}
    probabilities = outputs_probabilities(node)
    if sample.numel() > 1 and (probabilities or kind == "classification"):
        row[prefix + "class"] = int(sample.argmax())
    elif sample.numel() == 1 and kind == "binary":    # one score: a probability, or a logit (0 is p = 0.5)
        row[prefix + "class"] = int(float(sample[0]) >= (0.5 if probabilities else 0.0))
    if names and 0 <= row.get(prefix + "class", -1) < len(names):
        row[prefix + "class_name"] = str(names[row[prefix + "class"]])
    if probabilities and sample.numel() > 1:
        row.update({f"{prefix}p{j}": round(float(p), 6) for j, p in enumerate(sample)})
    else:
        row.update({f"{prefix}{j}" if sample.numel() > 1 else prefix + "value": round(float(v), 6)
                    for j, v in enumerate(sample)})
    return row


def _per_position_classes(sample: torch.Tensor, kind: str | None, classes: int | None) -> list[int] | None:
    """A classifier's class at every position of one sample's scores ([T, C], or torch's [C, T]),
    where the sample has positions; None for scores of the sample as a whole."""
    if kind != "classification" or not classes or sample.dim() < 2:
        return None
    dim = -1 if sample.shape[-1] == classes else 0 if sample.shape[0] == classes else None
    return None if dim is None else sample.argmax(dim).reshape(-1).tolist()


def _output_kinds(checked, graph, state) -> dict:
    """node name -> (the kind of the loss that trained it, "classification", "binary"..., its
    target's class count, and its class names where the data gave them).  A node a classifier's
    loss reads gives class scores even where no softmax follows it; a softmax or sigmoid of such
    a node (a model that returns probabilities, its loss reading the logits) is of its kind too."""
    info = state.get("data_info") or {}
    try:
        objectives = build_objectives(checked.train, graph, info)
    except Exception:       # noqa: BLE001 - an old or unusual checkpoint: predict without class columns
        return {}
    targets = info.get("targets") or {}
    kinds = {}
    for objective in (o for o in objectives if o.kind in CLASS_KINDS):
        target = targets.get(objective.target) or {}
        kinds[objective.on] = (objective.kind, target.get("num_classes"), target.get("names"))
    for name, node in graph.nodes.items():
        if name not in kinds and outputs_probabilities(node) and len(node.inputs) == 1 and node.inputs[0] in kinds:
            kinds[name] = kinds[node.inputs[0]]
    return kinds


def _read_inputs(paths: list[str], spec_in: list, data_info: dict):
    images = [p for p in paths if p.lower().endswith(IMAGE_SUFFIXES)]
    if images:
        if len(images) != len(paths) or len(spec_in) != 1:
            raise DataError("give either image files for a one-input model, or one .npz/.pt file", path="predict")
        return [_read_images(images, spec_in[0], data_info)], [os.path.basename(p) for p in images]
    if len(paths) != 1:
        raise DataError("give one .npz or .pt file holding the inputs", path="predict")
    path = paths[0]
    if not os.path.isfile(path):
        raise DataError(f"no such file: {path}" if not os.path.exists(path) else f"{path} is not a file",
                        path="predict", hint="give a .npz or .pt file holding the inputs, or image files")
    if not path.lower().endswith((".npz", ".pt", ".pth")):
        raise DataError(f"cannot read {path}: predict takes .npz, .pt or image files", path="predict")
    found = read_arrays(path, bare=spec_in[0].name, where="predict")
    arrays = []
    for spec_input, array in zip(spec_in, _match_names(path, found, spec_in)):
        want = tuple(spec_input.shape or ())
        if tuple(array.shape) == want:
            array = array.unsqueeze(0)
        if not len(array):
            raise DataError(f"{path}'s {spec_input.name} holds no samples", path="predict")
        if array[0].numel() != int(np.prod(want)):
            raise DataError(f"{spec_input.name} samples have shape {list(array.shape[1:])}, the spec wants {list(want)}",
                            path="predict")
        array = array.reshape((array.shape[0],) + want)
        arrays.append(cast_input(array, spec_input.torch_dtype(), f"{os.path.basename(path)}'s {spec_input.name}",
                                 spec_input.name, path="predict"))
    if len({len(a) for a in arrays}) > 1:
        raise DataError(f"the arrays in {path} have different numbers of samples: "
                        + ", ".join(f"{s.name}={len(a)}" for s, a in zip(spec_in, arrays)), path="predict",
                        hint="give every input one row per sample")
    return arrays, [f"{os.path.basename(path)}[{i}]" for i in range(arrays[0].shape[0])]


def _match_names(path: str, found: dict, spec_in: list) -> list:
    """The file's array for each input: by the input's name; a lone array feeds a lone input."""
    if len(spec_in) == 1 and len(found) == 1:
        return list(found.values())
    for spec_input in spec_in:
        if spec_input.name not in found:
            names = ", ".join(s.name for s in spec_in)
            raise DataError(f"{path} has no array named {spec_input.name!r} (its arrays: {', '.join(found)})",
                            path="predict", hint=did_you_mean(spec_input.name, found)
                            or f"name the arrays after the spec's inputs: {names}")
    return [found[s.name] for s in spec_in]


def _read_images(paths: list[str], spec_input, data_info: dict) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError
    shape = tuple(spec_input.shape or ())
    channels, height, width = (shape if len(shape) == 3 else (1, 28, 28) if int(np.prod(shape)) == 784 else (None,) * 3)
    if channels is None:
        raise DataError(f"input {spec_input.name} {list(shape)} is not an image", path="predict")
    norm = data_info.get("normalize") or {}
    batch = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"no such image file: {path}", path="predict", hint="check the path")
        if os.path.getsize(path) == 0:
            raise DataError(f"the image file {path} is empty (0 bytes)", path="predict",
                            hint="was it written completely? give another image")
        try:
            with Image.open(path) as opened:
                image = opened.convert("L" if channels == 1 else "RGB").resize((width, height))
        except (UnidentifiedImageError, OSError, ValueError) as error:   # not an image, or a damaged one
            reason = "not an image file PIL can read" if isinstance(error, UnidentifiedImageError) else \
                f"damaged: {error}"
            raise DataError(f"cannot read the image {path}: {reason}", path="predict",
                            hint="give PNG, JPEG, BMP, GIF, TIFF or WebP files") from None
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
    writer.writerows({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    return out.getvalue()
