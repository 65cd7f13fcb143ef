"""The experiments a config can ask for, one module each (its models, outputs and config
checks in one place), in the order the grid lists their models and datasets. Adding an
experiment: a module here with an ``Experiment`` subclass, its entry in ``EXPERIMENTS``, its
block in the config schema, and the rule that writes its outputs."""

from pagrob.experiments.external import External
from pagrob.experiments.grad_of_ablation import ClassScoreAblation
from pagrob.experiments.lambda_ablation import LambdaAblation
from pagrob.experiments.main import Main
from pagrob.experiments.pag_scores import PagScores
from pagrob.experiments.robustness import Robustness
from pagrob.experiments.score_based import ScoreBased
from pagrob.experiments.seeds import Seeds
from pagrob.experiments.sigma_sweep import SigmaSweep
from pagrob.experiments.toy import Toy

#: each experiment, by its name on the grid (grid.<name>, its block under experiments:)
EXPERIMENTS = (
    Toy,
    Main,
    Seeds,
    LambdaAblation,
    SigmaSweep,
    ClassScoreAblation,
    External,
    PagScores,
    Robustness,
    ScoreBased,
)
