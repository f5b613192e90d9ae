"""The differential checker: one step vocabulary run on the model and on the live kernel,
and scenario files (JSON or step scripts) translated into it."""
from ._scenario import Claim, Scenario, ScenarioError, Verdict, judge, load, loads
from ._script import Step, StepResult, compare, failures, outcome, parse, run_script

__all__ = ["Step", "StepResult", "compare", "failures", "outcome", "parse", "run_script",
           "Claim", "Scenario", "ScenarioError", "Verdict", "judge", "load", "loads"]
