"""Subcommands beyond validate register here (summary, graph, list, train...)."""
