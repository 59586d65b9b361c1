"""train.py's own parts: its flags and their defaults (flags), how a run starts and the one
resolved Run (start: afresh, resumed or from --init), one pass of training and one of validation
(engine), the lr schedules and the time budget (budget), the training augmentations (augment) and
--synth-mix's synthetic lines (synth_lines)."""
