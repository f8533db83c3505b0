"""The CIFAR and ImageNet experiments: train.py (one run), run.py (sweeps and the report)."""
