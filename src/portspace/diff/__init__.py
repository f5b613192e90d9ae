"""The differential checker: one step vocabulary run on the model and on the live kernel."""
from ._script import Step, StepResult, compare, failures, outcome, parse, run_script

__all__ = ["Step", "StepResult", "compare", "failures", "outcome", "parse", "run_script"]
