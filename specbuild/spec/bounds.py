"""Index values validation can know: positions from `arange` fed to an Embedding.

Shape inference knows shapes, not values, but an `arange` over a dim of known size
holds exactly 0 .. size-1.  Fed (directly) to an Embedding with fewer rows, every
forward would fail inside torch with "index out of range"; here it is an error at the
Embedding's line, naming both sizes (a GPT whose sequence outgrew its block_size).
"""
from __future__ import annotations

from ..errors import Problem

POSITIONS = "arange"
LOOKUPS = ("Embedding", "EmbeddingBag")


def check_positions(graph, results: dict, spec, problems: list[Problem]) -> None:
    for node in graph.nodes.values():
        if node.type not in LOOKUPS or not node.inputs or node.name not in results:
            continue
        source = graph.nodes.get(node.inputs[0])
        if source is None or source.type != POSITIONS or source.name not in results:
            continue
        size, rows = results[source.name].output[0], results[node.name].args.get("num_embeddings")
        if isinstance(size, int) and isinstance(rows, int) and size > rows:
            problems.append(spec.problem(
                f"{node.type} {node.name!r} has {rows} rows, but {source.name!r} gives positions 0 to {size - 1}",
                node.path + (("num_embeddings",) if "num_embeddings" in node.args else ()), node=node.name,
                hint=f"raise num_embeddings to {size}, or feed sequences of at most {rows}"))
