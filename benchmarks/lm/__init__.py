"""The Penn Treebank language-model experiment (paper Sec. 5.3, Table 3): data.py (PTB and the
Multi30k stand-in, batches, perplexity) and model.py (AWD-LSTM); train.py and run.py are still to
come (issue 19)."""
