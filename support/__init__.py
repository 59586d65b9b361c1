"""What the pipeline scripts share: the network's input (crops: image file -> tensor; tokenizer:
text <-> token ids), the training pass (engine), checkpoints, the run folder (runs), devices and
threads, and the one atomic write (atomic)."""
