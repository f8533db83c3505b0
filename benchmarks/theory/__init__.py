"""The paper's theory (Prop. 2, Figs. 3, 4 and 11): run.py writes the report."""
