"""train.py's own parts: how a run starts (start: afresh, resumed or from --init), one pass of
training and one of validation (engine), and the time budget (budget)."""
