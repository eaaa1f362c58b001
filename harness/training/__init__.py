"""Training one run: prepare, then execute (record, signals, outcomes) around the loop; checkpoints."""
