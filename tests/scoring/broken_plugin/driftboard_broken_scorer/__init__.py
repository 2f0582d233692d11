"""A scorer class that takes the name of a built-in one."""

from evals.scoring.scorers.causal_nll import CausalNll


class Clashing(CausalNll):
    name = "causal-nll"
