"""The translation experiment: train.py (one run), run.py (sweeps and the report)."""
