"""Helpers of ``scripts/evaluation_report.py``: test sets, evaluation runs,
figures and the markdown report. Not part of the installed engine."""
