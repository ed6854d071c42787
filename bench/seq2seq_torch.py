"""PyTorch reference for examples/translate.rs (LSTM + additive attention).

Same data split and ids (exported by `translate --export DIR`), same architecture,
sizes, initial-state bridge, loss, optimizer (Adam, cosine decay to 5 %, clipping at
norm 1), batch size, length buckets, epochs and thread count; prints greedy and beam
BLEU / chrF (sacreBLEU) and seconds per epoch, then one JSON line.

    target/release/examples/translate --prefixes --export bench/out/seq2seq ...
    bench/.venv/bin/python bench/seq2seq_torch.py bench/out/seq2seq --epochs 10 --threads 2
"""
import argparse
import json
import math
import pathlib
import random
import time

import sacrebleu
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def read_ids(path):
    src, tgt = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        s, t = line.split("\t")
        src.append([int(x) for x in s.split()])
        tgt.append([int(x) for x in t.split()] if t else [])
    return src, tgt


class Additive(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.wq = nn.Linear(h, h, bias=False)
        self.wk = nn.Linear(h, h)
        self.v = nn.Linear(h, 1, bias=False)

    def forward(self, q, keys, values, bias):
        # q (B, T, H), keys projected (B, S, H), bias (B, 1, S)
        e = torch.tanh(self.wq(q).unsqueeze(2) + keys.unsqueeze(1))
        w = torch.softmax(self.v(e).squeeze(-1) + bias, dim=-1)
        return w @ values, w


class Seq2Seq(nn.Module):
    def __init__(self, spec):
        super().__init__()
        e, h, l, p = spec["emb"], spec["hidden"], spec["layers"], spec["dropout"]
        self.h, self.l = h, l
        self.src_emb = nn.Embedding(spec["src_vocab"], e)
        self.enc = nn.LSTM(e, h // 2, l, batch_first=True, bidirectional=True, dropout=p if l > 1 else 0.0)
        self.bridge = nn.Linear(h, l * h)
        self.tgt_emb = nn.Embedding(spec["tgt_vocab"], e)
        self.dec = nn.LSTM(e, h, l, batch_first=True, dropout=p if l > 1 else 0.0)
        self.att = Additive(h)
        self.combine = nn.Linear(2 * h, h)
        self.out = nn.Linear(h, spec["tgt_vocab"])
        self.drop = nn.Dropout(p)

    def encode(self, src, lens):
        x = self.drop(self.src_emb(src))
        packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
        out, (hn, _) = self.enc(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        last = torch.cat([hn[-2], hn[-1]], dim=-1)  # forward at len-1, backward at 0
        h0 = torch.tanh(self.bridge(last)).view(-1, self.l, self.h).transpose(0, 1).contiguous()
        bias = (src == PAD).float().unsqueeze(1) * -1e9
        return self.att.wk(out), out, bias, (h0, torch.zeros_like(h0))

    def decode(self, tgt_in, keys, values, bias, state):
        y = self.drop(self.tgt_emb(tgt_in))
        h, state = self.dec(y, state)
        ctx, w = self.att(h, keys, values, bias)
        comb = torch.tanh(self.combine(torch.cat([h, ctx], -1)))
        return self.out(self.drop(comb)), state, w

    def forward(self, src, lens, tgt_in):
        keys, values, bias, state = self.encode(src, lens)
        return self.decode(tgt_in, keys, values, bias, state)[0]


def pad(rows, device):
    n = max(1, max(len(r) for r in rows))
    t = torch.full((len(rows), n), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        t[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return t


def buckets(src, tgt, bs, seed):
    idx = list(range(len(src)))
    random.Random(seed).shuffle(idx)
    idx.sort(key=lambda i: (len(src[i]), len(tgt[i])))
    return [idx[i : i + bs] for i in range(0, len(idx), bs)]


def make_batch(src, tgt, b):
    s = pad([src[i] for i in b], None)
    lens = torch.tensor([max(1, len(src[i])) for i in b])
    tin = pad([[BOS] + tgt[i] for i in b], None)
    tout = pad([tgt[i] + [EOS] for i in b], None)
    return s, lens, tin, tout


@torch.no_grad()
def greedy(model, src, lens, max_len):
    keys, values, bias, state = model.encode(src, lens)
    prev = torch.full((src.shape[0], 1), BOS, dtype=torch.long)
    out = [[] for _ in range(src.shape[0])]
    done = [False] * src.shape[0]
    for _ in range(max_len):
        logits, state, _ = model.decode(prev, keys, values, bias, state)
        nxt = logits[:, -1].argmax(-1)
        for i, t in enumerate(nxt.tolist()):
            if not done[i]:
                if t == EOS:
                    done[i] = True
                else:
                    out[i].append(t)
        if all(done):
            break
        prev = nxt.unsqueeze(1)
    return out


@torch.no_grad()
def beam(model, src, lens, k, alpha, max_len):
    """Beam search per sentence (same rules as Taper's: 2k candidates, finished
    hypotheses scored log p / len^alpha, done at k finished)."""
    keys, values, bias, state = model.encode(src, lens)
    beams = [([], 0.0, (state[0], state[1]))]
    finished = []
    for _ in range(max_len):
        prev = torch.tensor([[b[0][-1] if b[0] else BOS] for b in beams])
        h = torch.cat([b[2][0] for b in beams], 1)
        c = torch.cat([b[2][1] for b in beams], 1)
        n = len(beams)
        logits, (h2, c2), _ = model.decode(prev, keys.expand(n, -1, -1), values.expand(n, -1, -1), bias.expand(n, -1, -1), (h, c))
        lp = torch.log_softmax(logits[:, -1], -1)
        scores = torch.tensor([b[1] for b in beams]).unsqueeze(1) + lp
        top = torch.topk(scores.view(-1), min(2 * k, scores.numel()))
        nxt = []
        for s, flat in zip(top.values.tolist(), top.indices.tolist()):
            j, t = divmod(flat, lp.shape[1])
            if t == EOS:
                toks = beams[j][0]
                finished.append((s / (len(toks) + 1) ** alpha, toks))
                if len(finished) >= k:
                    break
            elif len(nxt) < k:
                nxt.append((beams[j][0] + [t], s, (h2[:, j : j + 1], c2[:, j : j + 1])))
            if len(nxt) >= k and len(finished) + len(nxt) >= k:
                break
        if len(finished) >= k or not nxt:
            break
        beams = nxt
    else:
        for toks, s, _ in beams:
            finished.append((s / (len(toks) + 1) ** alpha, toks))
    if len(finished) < k and beams and len(finished) == 0:
        finished = [(s / (len(t) + 1) ** alpha, t) for t, s, _ in beams]
    return max(finished, key=lambda f: f[0])[1] if finished else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("export", type=pathlib.Path)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    cfg = json.loads((a.export / "config.json").read_text())
    spec, bs = cfg["spec"], cfg["batch_size"]
    vocab = (a.export / "tgt_vocab.txt").read_text(encoding="utf-8").split("\n")[: spec["tgt_vocab"]]
    refs = (a.export / "test_refs.txt").read_text(encoding="utf-8").split("\n")[:-1]
    tr_s, tr_t = read_ids(a.export / "train.ids.tsv")
    te_s, te_t = read_ids(a.export / "test.ids.tsv")
    model = Seq2Seq(spec)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    bk = buckets(tr_s, tr_t, bs, a.seed)
    total = a.epochs * len(bk)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda t: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    ls = 0.0
    times = []
    for ep in range(a.epochs):
        model.train()
        order = list(range(len(bk)))
        random.Random(a.seed * 1000 + ep).shuffle(order)
        t0 = time.time()
        tot, ntok = 0.0, 0
        for bi in order:
            s, lens, tin, tout = make_batch(tr_s, tr_t, bk[bi])
            logits = model(s, lens, tin)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD, label_smoothing=ls)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            n = int((tout != PAD).sum())
            tot += loss.item() * n
            ntok += n
        model.eval()
        with torch.no_grad():
            vt, vn = 0.0, 0
            for b in buckets(te_s, te_t, 256, a.seed):
                s, lens, tin, tout = make_batch(te_s, te_t, b)
                logits = model(s, lens, tin)
                l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD, reduction="sum")
                vt += l.item()
                vn += int((tout != PAD).sum())
        times.append(time.time() - t0)
        print(f"epoch {ep + 1}: train loss {tot / ntok:.4f} valid nll {vt / vn:.4f} ({times[-1]:.1f} s)", flush=True)
    join = cfg["join"]
    dec = lambda ids: join.join(vocab[i] for i in ids)
    model.eval()
    max_len = spec["max_tgt_len"]
    t0 = time.time()
    order = sorted(range(len(te_s)), key=lambda i: len(te_s[i]))
    hyp_g = [None] * len(te_s)
    for j in range(0, len(order), 256):
        b = order[j : j + 256]
        s = pad([te_s[i] for i in b], None)
        lens = torch.tensor([max(1, len(te_s[i])) for i in b])
        for i, o in zip(b, greedy(model, s, lens, max_len)):
            hyp_g[i] = dec(o)
    tg = time.time() - t0
    t0 = time.time()
    hyp_b = []
    for i in range(len(te_s)):
        s = pad([te_s[i]], None)
        hyp_b.append(dec(beam(model, s, torch.tensor([max(1, len(te_s[i]))]), a.beam, a.alpha, max_len)))
    tb = time.time() - t0
    bg, bb = sacrebleu.corpus_bleu(hyp_g, [refs]).score, sacrebleu.corpus_bleu(hyp_b, [refs]).score
    cg, cb = sacrebleu.corpus_chrf(hyp_g, [refs]).score, sacrebleu.corpus_chrf(hyp_b, [refs]).score
    print(f"greedy BLEU {bg:.2f} chrF {cg:.2f}; beam {a.beam} BLEU {bb:.2f} chrF {cb:.2f}; {sum(times) / len(times):.1f} s/epoch")
    print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "threads": a.threads, "epochs": a.epochs,
                      "seconds_per_epoch": sum(times) / len(times), "bleu_greedy": bg, "chrf_greedy": cg,
                      "bleu": bb, "chrf": cb, "greedy_decode_seconds": tg, "beam_decode_seconds": tb,
                      "sacrebleu": sacrebleu.__version__}))


if __name__ == "__main__":
    main()
