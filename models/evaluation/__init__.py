"""Held-out metrics with intervals, evaluation reports and the comparative study."""
