"""File formats: SVHN's digitStruct.mat (digitstruct: read; digitstruct_write: write), your own
labels (labels_csv: a labels CSV, a gt.txt, file names) and the split JSON (records)."""
