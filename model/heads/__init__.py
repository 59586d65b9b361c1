"""The heads: each reads the encoder's features (B, L, C) and shares one interface:
loss(features, targets) -> (scores, loss) for targets (B, T) = <s> chars </s> <pad>...;
decode(features, beam, max_len) -> {tokens, probs, attention or None, logprob};
summed_loss(features, targets, decoded, truth) -> (sum, count) for eval.py's report;
export_outputs(features) -> (tokens, probs) with no data-dependent branch (export.py);
unreadable(texts) -> how many training texts it cannot learn (train.py reports them);
BEAM (whether decode takes beam > 1) and VOCAB_ROWS (weights with a row per token).
A new head is one file and one entry here; the model config's "head" names it."""
from model.heads.attention import AttentionHead
from model.heads.ctc import CTCHead

HEADS = {"attention": AttentionHead, "ctc": CTCHead}
