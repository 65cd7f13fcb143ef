"""Perceptually aligned gradients and adversarial robustness (Ganz, Kawar, Elad, ICML 2023).

The library knows nothing of Snakemake: data, models, gradient sources, the PAG loss, attacks,
training and evaluation are plain functions. The modules in ``pagrob.steps`` are the thin
command-line entry points that the workflow's rules call.
"""

__version__ = "0.1.0"
