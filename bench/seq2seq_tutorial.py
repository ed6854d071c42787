"""PyTorch's seq2seq tutorial model as a time-to-quality peer for `translate` (issue 22,
item 7): BLEU against training time on Taper's own split.

The model and training of "NLP From Scratch: Translation with a Sequence to Sequence
Network and Attention" (pytorch.org tutorials): a one-layer GRU encoder, a GRU decoder
with additive (Bahdanau) attention whose query is the previous hidden state and whose
GRU reads [embedding; context], hidden 256, dropout 0.1 on the embeddings, batch 32,
Adam 1e-3 for both halves at a constant rate, negative log-likelihood, full teacher
forcing. Two repairs the tutorial's fixed-length padding does not need but a bucketed
batch does: padded source positions get no attention and do not reach the encoder's
last state (packed sequences), and padded targets are left out of the loss.

Data: the split and ids `translate --export DIR` wrote (train.ids.tsv, test.ids.tsv,
tgt_vocab.txt, test_refs.txt), so both sides train and score on the same pairs. After
the epochs in --points it decodes the test split greedily (and with beam search at the
last point, Taper's rules) and scores with sacreBLEU; the time axis is training time
only. Prints one JSON line with the points.

    ${CARGO_TARGET_DIR:-target}/release/examples/translate --prefixes --epochs 1 --threads 2 \
        --out RUN --export bench/out/tutorial-ids      # add --data DIR where needed
    bench/.venv/bin/python bench/seq2seq_tutorial.py bench/out/tutorial-ids --threads 2

BLEU is scored on the tokenised text, as Taper scores it (sacreBLEU's warning about
that is silenced).
"""
import argparse
import json
import pathlib
import random
import time

import sacrebleu
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq_torch import BOS, EOS, PAD, beam, buckets, greedy, make_batch, pad, read_ids


class Tutorial(nn.Module):
    """Encoder and attention decoder of the tutorial, behind the interface
    `seq2seq_torch.greedy` and `beam` decode: `encode(src, lens)` and
    `decode(tgt_in, keys, values, bias, state)`."""

    def __init__(self, src_vocab, tgt_vocab, h=256, p=0.1):
        super().__init__()
        self.src_emb, self.tgt_emb = nn.Embedding(src_vocab, h), nn.Embedding(tgt_vocab, h)
        self.enc = nn.GRU(h, h, batch_first=True)
        self.dec = nn.GRU(2 * h, h, batch_first=True)
        self.wa, self.ua, self.va = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, 1)
        self.out = nn.Linear(h, tgt_vocab)
        self.drop = nn.Dropout(p)

    def encode(self, src, lens):
        x = self.drop(self.src_emb(src))
        packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
        out, hn = self.enc(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        bias = (src == PAD).float().unsqueeze(1) * -1e9  # (B, 1, S)
        # The state as the (h, c) pair `seq2seq_torch.beam` splits and joins; a GRU
        # has no cell, so the second is the first again.
        return self.ua(out), out, bias, (hn, hn)

    def decode(self, tgt_in, keys, values, bias, state):
        state = state[0]
        y = self.drop(self.tgt_emb(tgt_in))
        outs, ws = [], []
        for t in range(tgt_in.shape[1]):
            q = state.transpose(0, 1)  # (B, 1, H): the previous hidden state
            scores = self.va(torch.tanh(self.wa(q) + keys)).squeeze(-1).unsqueeze(1) + bias
            w = torch.softmax(scores, dim=-1)  # (B, 1, S)
            ctx = w @ values
            o, state = self.dec(torch.cat([y[:, t : t + 1], ctx], -1), state)
            outs.append(o)
            ws.append(w)
        return self.out(torch.cat(outs, 1)), (state, state), torch.cat(ws, 1)

    def forward(self, src, lens, tgt_in):
        keys, values, bias, state = self.encode(src, lens)
        return self.decode(tgt_in, keys, values, bias, state)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=pathlib.Path, help="translate --export directory")
    ap.add_argument("--points", default="1,2,3,5,10", help="epochs after which the test split is scored")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    for f in ("config.json", "tgt_vocab.txt", "test_refs.txt", "train.ids.tsv", "test.ids.tsv"):
        if not (a.export / f).is_file():
            raise SystemExit(f"{a.export / f}: not found (pass what `translate --prefixes --export DIR` wrote)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = json.loads((a.export / "config.json").read_text())
    spec = cfg["spec"]
    vocab = (a.export / "tgt_vocab.txt").read_text(encoding="utf-8").split("\n")[: spec["tgt_vocab"]]
    refs = (a.export / "test_refs.txt").read_text(encoding="utf-8").split("\n")[:-1]
    tr_s, tr_t = read_ids(a.export / "train.ids.tsv")
    te_s, te_t = read_ids(a.export / "test.ids.tsv")
    text = lambda ids: cfg["join"].join(vocab[i] for i in ids)
    points = sorted(int(p) for p in a.points.split(","))
    model = Tutorial(spec["src_vocab"], spec["tgt_vocab"])
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    bk = buckets(tr_s, tr_t, a.batch_size, a.seed)
    max_len = spec["max_tgt_len"]
    order = sorted(range(len(te_s)), key=lambda i: len(te_s[i]))
    trained, results = 0.0, []
    for ep in range(1, points[-1] + 1):
        model.train()
        batches = list(range(len(bk)))
        random.Random(a.seed * 1000 + ep).shuffle(batches)
        t0 = time.perf_counter()
        for bi in batches:
            s, lens, tin, tout = make_batch(tr_s, tr_t, bk[bi])
            logits = model(s, lens, tin)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD)
            opt.zero_grad()
            loss.backward()
            opt.step()
        trained += time.perf_counter() - t0
        if ep not in points:
            continue
        model.eval()
        hyp = [None] * len(te_s)
        for j in range(0, len(order), 256):
            b = order[j : j + 256]
            lens = torch.tensor([max(1, len(te_s[i])) for i in b])
            for i, o in zip(b, greedy(model, pad([te_s[i] for i in b], None), lens, max_len)):
                hyp[i] = text(o)
        point = {"epoch": ep, "train_seconds": trained, "bleu_greedy": sacrebleu.corpus_bleu(hyp, [refs], force=True).score}
        if ep == points[-1]:
            hyp_b = [text(beam(model, pad([s], None), torch.tensor([max(1, len(s))]), a.beam, 1.0, max_len))
                     for s in te_s]
            point["bleu"] = sacrebleu.corpus_bleu(hyp_b, [refs], force=True).score
        results.append(point)
        print(json.dumps(point), flush=True)
    print(json.dumps({"peer": "pytorch-seq2seq-tutorial", "torch": torch.__version__, "threads": a.threads,
                      "batch_size": a.batch_size, "lr": a.lr, "train_pairs": len(tr_s),
                      "test_pairs": len(te_s), "points": results, "sacrebleu": sacrebleu.__version__}))


if __name__ == "__main__":
    main()
