"""What the pipeline scripts share: images (opened under the pixel limit, found in folders), the
network's input (crops: image file -> tensor; tokenizer: text <-> token ids), the input rule
(inputs), the one inference path and its flags (inference, cli), checkpoints, the run folder
(runs, outputs), devices and threads, the scripts' entry (script) and the one atomic write
(atomic). train.py's own parts are in training/."""
