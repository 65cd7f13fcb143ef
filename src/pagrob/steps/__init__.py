"""Command-line entry points, one per workflow step: ``python -m pagrob.steps.<name> --help``.

Each reads its inputs, calls the library and writes its outputs atomically; none of them knows
about Snakemake, so any step can be run and debugged by hand.
"""
