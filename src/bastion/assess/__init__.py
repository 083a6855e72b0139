"""Assessment: run checks against a model and build a scored report from their findings."""

from bastion.assess.check import AssessmentData, Budget, Check
from bastion.assess.runner import assess

__all__ = ["AssessmentData", "Budget", "Check", "assess"]
