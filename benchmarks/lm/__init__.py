"""The Penn Treebank language-model experiment (paper Table 3, Fig. 7): data.py (PTB and the
Multi30k stand-in, batches, perplexity), model.py (AWD-LSTM), train.py (one run, resumable);
run.py (the sweeps and the report) is still to come (issue 19)."""
