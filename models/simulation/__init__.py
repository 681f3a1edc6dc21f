"""Simulated feature cohorts drawn from the phantom's signal model (tests, benchmarks, ``--synthetic N``)."""
