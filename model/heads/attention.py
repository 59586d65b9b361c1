"""The seed's head: a two-layer GRU decoder with additive attention over the feature map, one
character per step, with batched greedy and beam decoding.

Dimension letters used in the shape comments:
    B  batch (images; B*K rows in beam search, K = beam size)
    C  encoder channels            L  attention positions (the feature map's H*W)
    T  decoding steps              V  vocabulary size
    D  decoder hidden size         A  attention size (= D)
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    """Additive attention: score_i = v^T relu(W f_i + U h), softmax over the L positions."""

    def __init__(self, feature_dim, hidden, attention_dim):
        super().__init__()
        self.W = nn.Linear(feature_dim, attention_dim)
        self.U = nn.Linear(hidden, attention_dim)
        self.v = nn.Linear(attention_dim, 1, bias=False)  # a bias would cancel in the softmax

    def project(self, features):
        """W f for every position; depends only on the image, so callers do it once per image."""
        return self.W(features)  # (B, L, A)

    def forward(self, features, projected, h):
        scores = self.v(torch.relu(projected + self.U(h).unsqueeze(1))).squeeze(2)  # (B, L)
        # float32 even under autocast (float64 stays float64, for exact checks)
        dtype = torch.promote_types(scores.dtype, torch.float32)
        alpha = torch.softmax(scores, dim=1, dtype=dtype)  # (B, L)
        context = torch.bmm(alpha.unsqueeze(1).to(features.dtype), features).squeeze(1)  # (B, C)
        return context, alpha


class StackedGRU(nn.Module):
    """Two GRU cells, the first one's output (with dropout) feeding the second."""

    def __init__(self, input_size, hidden, dropout=0.0):
        super().__init__()
        self.cells = nn.ModuleList([nn.GRUCell(input_size, hidden), nn.GRUCell(hidden, hidden)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, h):
        h1 = self.cells[0](x, h[0])  # (B, D)
        h2 = self.cells[1](self.dropout(h1), h[1])  # (B, D)
        return torch.stack([h1, h2])  # (2, B, D)


def masked_cross_entropy(logits, targets, pad_id):
    """Mean cross-entropy over the non-pad targets; logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=pad_id)


class AttentionHead(nn.Module):
    """One character per step: GRU on [previous output, embedding(previous token)], attend,
    classify. The model keeps it as `decoder` (the seed's weight names).

    Before the first step a glimpse (step -1) attends from the initial state h0 alone, and its
    output y, which depends on the image, is the "previous output" of step 0."""

    BEAM = True  # decode() takes any beam width
    VOCAB_ROWS = ("embedding.weight", "classifier.weight", "classifier.bias")  # one per token

    def __init__(self, config, feature_dim):
        super().__init__()
        self.config = config
        hidden, dropout = config["hidden"], config["dropout"]
        self.hidden = hidden
        self.glimpse = config["glimpse"]
        # learned initial state of both layers, drawn from N(0, 1) as the seed's is: from zeros the
        # glimpse would start from the same query for every run
        self.h0 = nn.Parameter(torch.randn(2, hidden))
        self.embedding = nn.Embedding(config["vocab_size"], hidden)
        self.rnn = StackedGRU(2 * hidden, hidden, dropout)
        self.attention = Attention(feature_dim, hidden, hidden)
        self.output = nn.Linear(feature_dim + hidden, hidden)
        self.dropout = nn.Dropout(dropout)  # on y before the classifier, never on the y fed back
        self.classifier = nn.Linear(hidden, config["vocab_size"])

    def attend(self, h, features, projected):
        """y = relu(fc([context, h_top])) for states h (2, B, D) -> (y (B, D), alpha (B, L))."""
        context, alpha = self.attention(features, projected, h[1])  # (B, C), (B, L)
        y = torch.relu(self.output(torch.cat([context, h[1].to(context.dtype)], dim=1)))  # (B, D)
        return y, alpha

    def init_state(self, features, projected):
        """(hidden (2, B, D) = h0, previous output y (B, D)) for features (B, L, C).

        y comes from the glimpse: attention from h0's top layer, before any token is read.
        Nothing is classified there, so its attention is not returned."""
        B = features.size(0)
        h = self.h0.unsqueeze(1).expand(2, B, self.hidden).contiguous()  # (2, B, D)
        if not self.glimpse:  # format-1 checkpoints were trained with zeros here
            return h, features.new_zeros(B, self.hidden, dtype=self.h0.dtype)  # (B, D)
        y, _ = self.attend(h, features, projected)  # (B, D)
        return h, y

    def step(self, tokens, state, features, projected):
        """One step for the previous tokens (B,) -> (y (B, D), state, alpha (B, L))."""
        h, y = state
        x = torch.cat([y, self.embedding(tokens).to(y.dtype)], dim=1)  # (B, 2D)
        h = self.rnn(x, h)  # (2, B, D)
        y, alpha = self.attend(h, features, projected)  # (B, D), (B, L)
        return y, (h, y), alpha

    def logits(self, y):
        """classifier(dropout(y)): (..., D) -> (..., V)."""
        return self.classifier(self.dropout(y))

    def forward(self, features, inputs):
        """Teacher forcing over inputs (B, T); returns logits (B, T, V) and attention (B, T, L)."""
        projected = self.attention.project(features)  # (B, L, A), once per image
        state = self.init_state(features, projected)
        outs, alphas = [], []
        for t in range(inputs.size(1)):
            y, state, alpha = self.step(inputs[:, t], state, features, projected)
            outs.append(y)
            alphas.append(alpha)
        logits = self.logits(torch.stack(outs, dim=1))  # (B, T, V)
        return logits, torch.stack(alphas, dim=1)  # (B, T, V), (B, T, L)

    def loss(self, features, targets):
        """Teacher forcing: targets (B, T) = <s> chars </s> <pad>...; returns (logits, loss)."""
        logits, _ = self(features, targets[:, :-1])  # (B, T-1, V)
        return logits, masked_cross_entropy(logits, targets[:, 1:], self.config["pad_id"])

    def unreadable(self, texts):
        """Texts this head cannot learn: none (train.py raises max_len to the longest)."""
        return 0

    def summed_loss(self, features, targets, decoded, truth):
        """(summed cross-entropy, target tokens) of a batch, for eval.py's report. Where the
        decoded sequence equals the truth, teacher forcing follows exactly the decoded path, so
        its loss is -logprob (</s> included); the decoder runs again only on the other rows."""
        pad_id = self.config["pad_id"]
        right = torch.tensor([p == t for p, t in zip(decoded["tokens"], truth)], dtype=torch.bool)
        logprob = decoded["logprob"].float().cpu()
        total = -logprob[right].double().sum().item()
        count = sum(len(t) + 1 for t, r in zip(truth, right.tolist()) if r)
        wrong = (~right).nonzero().flatten()
        if len(wrong):
            toks = targets[wrong.to(targets.device)]
            toks = toks[:, : int((toks != pad_id).sum(1).max())]  # drop all-pad columns
            logits, _ = self(features[wrong.to(features.device)], toks[:, :-1])  # (b, T-1, V)
            target = toks[:, 1:]
            total += F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(),
                                     ignore_index=pad_id, reduction="sum").item()
            count += int((target != pad_id).sum())
        return total, count

    def decode(self, features, beam=1, max_len=None):
        """{tokens: lists of ids, probs (B, T), attention (B, T, L), logprob (B,)}: greedy
        decoding (beam 1) or beam search."""
        if beam == 1:
            return result(self.config, *self.greedy_steps(features, max_len))
        return self.beam_search(features, beam, max_len)

    def export_outputs(self, features):
        """(tokens (B, max_len + 1), probs) with no data-dependent branch: what export.py traces."""
        tokens, _, probs, _ = self.greedy_steps(features, early_exit=False)
        return tokens, probs

    def _next_logprobs(self, tokens, state, features, projected, last_step):
        """Log-probs (B, V) of one step, plus the scores used to choose the next token.

        <pad> and <s> are never chosen (they are never targets). At the last step only </s> may
        be chosen, so every sequence ends with </s> and its log-prob always includes that term.
        """
        y, state, alpha = self.step(tokens, state, features, projected)
        logp = torch.log_softmax(self.logits(y).float(), dim=1)  # (B, V)
        if last_step:
            choice = torch.full_like(logp, float("-inf"))  # (B, V)
            choice[:, self.config["eos_id"]] = logp[:, self.config["eos_id"]]
        else:
            choice = logp.clone()  # (B, V)
            choice[:, [self.config["pad_id"], self.config["bos_id"]]] = float("-inf")
        return logp, choice, state, alpha

    def greedy_steps(self, features, max_len=None, early_exit=True):
        """decode()'s tensors: (tokens (B, T), attention (B, T, L), probs (B, T), logprob (B,));
        tokens end with </s>, then <pad>. Rows that have emitted </s> keep being computed
        (cheaper than compacting the batch) but are frozen as <pad>, their attention and probs
        zero. early_exit=False always runs max_len + 1 steps, with no data-dependent branch."""
        max_len, pad, eos, bos = decoding_ids(self.config, max_len)
        projected = self.attention.project(features)  # (B, L, A)
        state = self.init_state(features, projected)  # after the glimpse
        tokens = torch.full_like(features[:, 0, 0], bos, dtype=torch.long)  # (B,)
        done = torch.zeros_like(tokens, dtype=torch.bool)  # (B,)
        logprob = torch.zeros_like(tokens, dtype=torch.float32)  # (B,)
        steps = []
        attention = []
        probs = []
        for t in range(max_len + 1):
            logp, choice, state, alpha = self._next_logprobs(tokens, state, features, projected,
                                                              t == max_len)
            # argmax of (score so far + step log-prob): the same arithmetic as beam_search with
            # beam=1, so the two agree even on near-ties
            tokens = (logprob.unsqueeze(1) + choice).argmax(dim=1)  # (B,)
            lp = logp.gather(1, tokens.unsqueeze(1)).squeeze(1)  # (B,)
            tokens = tokens.masked_fill(done, pad)  # (B,)
            lp = lp.masked_fill(done, 0.0)  # (B,)
            logprob = logprob + lp  # (B,)
            steps.append(tokens)
            attention.append(alpha.masked_fill(done.unsqueeze(1), 0.0))  # (B, L)
            probs.append(lp.exp().masked_fill(done, 0.0))  # (B,)
            done = done | (tokens == eos)  # (B,)
            if early_exit and bool(done.all()):  # one sync per step, not per image
                break
        return (torch.stack(steps, dim=1), torch.stack(attention, dim=1),
                torch.stack(probs, dim=1), logprob)

    def beam_search(self, features, beam=4, max_len=None):
        """Batched beam search over B*K rows; decode()'s dict for the best hypothesis.

        Scores are plain sums of log-probs (no length normalisation), the quantity greedy
        decoding reports, so beam=1 is greedy. A finished hypothesis is carried along with <pad>
        at zero cost; the search stops once every image's best hypothesis is finished, since
        extending an unfinished one can only lower its score.
        """
        if beam < 1:
            raise ValueError(f"beam size must be >= 1, got {beam}")
        max_len, pad, eos, bos = decoding_ids(self.config, max_len)
        K = beam
        B, L, _ = features.shape
        device = features.device
        features = features.repeat_interleave(K, dim=0)  # (B*K, L, C)
        projected = self.attention.project(features)  # (B*K, L, A)
        h, out = self.init_state(features, projected)  # (2, B*K, D), (B*K, D)
        tokens = torch.full((B * K,), bos, dtype=torch.long, device=device)  # (B*K,)
        scores = torch.full((B, K), float("-inf"), device=device)  # (B, K)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first
        done = torch.zeros(B, K, dtype=torch.bool, device=device)  # (B, K)
        steps = torch.zeros(B, K, 0, dtype=torch.long, device=device)  # (B, K, T)
        attention = torch.zeros(B, K, 0, L, device=device)  # (B, K, T, L)
        probs = torch.zeros(B, K, 0, device=device)  # (B, K, T)
        rows = torch.arange(B, device=device).unsqueeze(1) * K  # (B, 1)
        for t in range(max_len + 1):
            logp, choice, (h, out), alpha = self._next_logprobs(
                tokens, (h, out), features, projected, t == max_len)
            V = logp.size(1)
            logp, choice = logp.view(B, K, V), choice.view(B, K, V)  # (B, K, V)
            # a finished hypothesis may only continue with <pad>, at no cost
            choice = choice.masked_fill(done.unsqueeze(2), float("-inf"))  # (B, K, V)
            choice[..., pad] = choice[..., pad].masked_fill(done, 0.0)  # (B, K)
            total = (scores.unsqueeze(2) + choice).view(B, K * V)  # (B, K*V)
            scores, index = total.topk(K, dim=1)  # (B, K), sorted best first
            origin, tokens = index // V, index % V  # (B, K) source beam and chosen token
            was_done = done.gather(1, origin)  # (B, K)
            lp = logp.view(B, K * V).gather(1, index).masked_fill(was_done, 0.0)  # (B, K)
            alpha = alpha.view(B, K, L).gather(1, origin.unsqueeze(2).expand(B, K, L))  # (B, K, L)
            steps = torch.cat([steps.gather(1, origin.unsqueeze(2).expand_as(steps)),
                               tokens.unsqueeze(2)], dim=2)  # (B, K, T)
            attention = torch.cat([
                attention.gather(1, origin[:, :, None, None].expand_as(attention)),
                alpha.masked_fill(was_done.unsqueeze(2), 0.0).unsqueeze(2)], dim=2)  # (B, K, T, L)
            new_probs = lp.exp().masked_fill(was_done, 0.0).unsqueeze(2)  # (B, K, 1)
            probs = torch.cat([probs.gather(1, origin.unsqueeze(2).expand_as(probs)),
                               new_probs], dim=2)  # (B, K, T)
            done = was_done | (tokens == eos)  # (B, K)
            flat = (rows + origin).view(-1)  # (B*K,) rows to carry forward
            h, out = h[:, flat], out[flat]  # (2, B*K, D), (B*K, D)
            tokens = tokens.view(-1)  # (B*K,)
            if bool(done[:, 0].all()):
                break
        # best hypothesis = beam 0 (topk is sorted); its score is the sum of emitted log-probs
        return result(self.config, steps[:, 0], attention[:, 0], probs[:, 0], scores[:, 0])


def decoding_ids(config, max_len=None):
    """(the length cap: max_len, or the config's; the <pad>, </s> and <s> ids)."""
    max_len = config["max_len"] if max_len is None else max_len
    return max_len, config["pad_id"], config["eos_id"], config["bos_id"]


def result(config, steps, attention, probs, logprob):
    """Per-step tensors (B, T) as decode()'s dict; token lists are built once, at the end:
    each row's ids before its </s>."""
    pad, eos = config["pad_id"], config["eos_id"]
    lengths = ((steps != pad) & (steps != eos)).sum(dim=1)  # (B,)
    rows = steps.tolist()
    tokens = [row[:n] for row, n in zip(rows, lengths.tolist())]
    return {"tokens": tokens, "attention": attention, "probs": probs, "logprob": logprob}
