"""Evaluation: the loss and metrics of a model over a whole held-out set, computed once
from all outputs (as the trainer does after every epoch, and `specbuild evaluate` on a
checkpoint).  The loss is the same weighted objective training minimises."""
from __future__ import annotations

import math

import torch

from ..compiler.compile import build_model
from ..data.load import load_data
from ..data.tensors import DataError
from ..spec.validate import check
from .checkpoint import CheckpointError, load_checkpoint, load_weights
from .metrics import METRICS, compute_metrics, resolve_metrics
from .objectives import INPUT_TARGET, build_objectives, check_labels, objective_loss, probability_nodes, target_of
from .distributed import Distributed
from .session import pick_device

EVAL_BATCH = 1024
CLASS_KINDS = ("classification", "binary")
ID_MODULES = (torch.nn.Embedding, torch.nn.EmbeddingBag)     # modules whose input indexes a table


def evaluate_model(model, data, objectives, metric_names, probability_nodes=(), dist=None) -> dict:
    """Loss and metrics over the whole of `data`, computed once from all outputs."""
    dist = dist or Distributed()
    was_training = model.training
    model.eval()
    collected = [[] for _ in objectives]     # per objective: two losses may read one node
    total, n = 0.0, 0
    with torch.no_grad():
        for inputs, targets in data.batches(EVAL_BATCH, shuffle=False, rank=dist.rank, world_size=dist.world_size):
            outputs = model(*inputs)
            for k, o in enumerate(objectives):
                collected[k].append(outputs[o.on])
            batch = inputs[0].shape[0]
            total += float(objective_loss(objectives, outputs, inputs, targets)) * batch
            n += batch
    model.train(was_training)
    row = {"val_loss": dist.sum(total) / max(dist.sum(n), 1)}
    if not math.isfinite(row["val_loss"]):
        return row          # NaN or inf outputs: no metric is defined (scikit-learn refuses them)
    several = len(objectives) > 1
    for k, o in enumerate(objectives):
        output = dist.gather(torch.cat(collected[k]), EVAL_BATCH, len(data))
        target = target_of(o, data.inputs, data.targets)
        prefix = f"val_{o.name}_" if several else "val_"
        if several:
            row[prefix + "loss"] = float(o(output, target))
        kind = "classification" if o.kind in CLASS_KINDS else "regression"
        names = [m for m in metric_names if METRICS[m].kind == kind]
        if not names:
            continue
        if kind == "classification":       # scores per position count each position as a sample
            scores, labels = o.per_sample(output, target)
            probs = o.probabilities(scores, o.on in probability_nodes)
            values = compute_metrics(names, y_true=labels.cpu().numpy(), probs=probs.float().cpu().numpy())
        else:
            flat = output.reshape(output.shape[0], -1).float().cpu().numpy()
            values = compute_metrics(names, y_true=target.reshape(output.shape[0], -1).float().cpu().numpy(), scores=flat)
        row.update({prefix + key: v for key, v in values.items()})
    return row


def default_metrics(objectives) -> list[str]:
    names = []
    for o in objectives:
        names += ["accuracy"] if o.kind in CLASS_KINDS else ["mse", "mae"]
    return list(dict.fromkeys(names))


def run_metrics(config, objectives) -> list[str]:
    """The metrics a run reports: the spec's, or those that suit its objectives."""
    return resolve_metrics(list(config.metrics) or default_metrics(objectives))


def loss_model(checked, network: str, objectives):
    """The model returning just the nodes the losses read (the logits): a softmax the spec
    returns for users is not computed where nothing reads it.  Weights as build_model's."""
    wanted = list(dict.fromkeys(o.on for o in objectives))
    return build_model(checked, network=network, outputs={n: n for n in wanted})


def id_tables(model, graph) -> dict:
    """input name -> [(node name, module)] of the Embeddings that read the input directly."""
    tables = {}
    for node in graph.nodes.values():
        for name in node.inputs:
            if name in graph.inputs:
                try:
                    module = model.get_submodule(node.share or node.name)
                except AttributeError:
                    continue
                if isinstance(module, ID_MODULES):
                    tables.setdefault(name, []).append((node.name, module))
    return tables


def check_token_ids(model, graph, arrays: list, source: str, command: str) -> None:
    """Ids fed to an Embedding must index its table: checked before the forward pass (which would
    fail with torch's "index out of range in self"), naming the input, the node and the range."""
    tables = id_tables(model, graph)
    for spec_input, x in zip(graph.inputs.values(), arrays):
        if x.is_floating_point() or x.is_complex() or x.numel() == 0:
            continue
        for node_name, module in tables.get(spec_input.name, []):
            size = module.num_embeddings
            outside = (x < 0) | (x >= size)
            if bool(outside.any()):
                where = outside.nonzero()[0].tolist()
                bad = int(x[tuple(where)])
                raise DataError(f"input {spec_input.name} of {source} holds the id {bad} (sample {where[0]}), but "
                                f"{node_name} ({type(module).__name__}) has {size} rows: ids run from 0 to {size - 1}",
                                path=command, hint="ids cannot be negative" if bad < 0 else
                                f"give ids below {size}, or train a spec whose {node_name} has num_embeddings of "
                                f"at least {int(x.max()) + 1}")


def load_predictor(checkpoint: str, command: str):
    """(state, checked spec, network name) of a checkpoint of a model that predicts."""
    state = load_checkpoint(checkpoint)
    if state.get("task") == "gan":
        raise DataError("this is a GAN checkpoint: it generates samples rather than predicting",
                        hint="its sample grids are in the run folder's samples/", path=command)
    checked = check(state["spec"])
    network = state.get("network") or next(iter(checked.graphs.networks))
    if network not in checked.graphs.networks:
        raise CheckpointError(f"this checkpoint names the network {network!r}, which its spec does not have",
                              file=checkpoint, hint="use a checkpoint written by `specbuild train`")
    return state, checked, network


def evaluate(checkpoint: str, *, data=None, data_root=None, limit=None, device="auto", download=True) -> dict:
    """Loss and metrics of a checkpoint on its data set's held-out part (or on `data`)."""
    device = pick_device(device)
    state, checked, network = load_predictor(checkpoint, "evaluate")
    config = checked.train
    graph = checked.graphs.networks[network]
    options = dict(config.data.options)
    if data is not None:
        options["dataset"] = data
    bundle = load_data(options, list(graph.inputs.values()), root=data_root, download=download, limit=limit)
    name = bundle.info.get("name")
    if not len(bundle.test):
        raise DataError(f"the held-out part of data set {name!r} is empty: there is nothing to evaluate",
                        path="evaluate", hint="give a data set with held-out samples (a larger file, or a test: file)")
    objectives = build_objectives(config, graph, bundle.info)
    for o in objectives:
        if o.target != INPUT_TARGET and o.target not in bundle.test.targets:
            known = ", ".join(bundle.test.targets) or "none"
            raise DataError(f"data set {name!r} has no target {o.target!r} to compare {o.on!r} with (its targets: "
                            f"{known})", path="evaluate", hint=f"evaluate needs the answers: give data with an "
                            f"array named {o.target!r} beside the inputs")
    check_labels(objectives, checked.shapes[network], bundle)
    model = loss_model(checked, network, objectives)
    load_weights(model, state["model"], checkpoint)
    check_token_ids(model, graph, bundle.test.inputs, f"data set {name!r}", "evaluate")
    model.to(device)
    row = evaluate_model(model, bundle.test.to(device), objectives, run_metrics(config, objectives),
                         probability_nodes(objectives, graph))
    return {"data": name, "samples": len(bundle.test), "epoch": state.get("epoch"), **row}
