"""PyTorch peer for Transformer decoding (issue 22, item 2): the same trained model,
decoded with an incremental decoder (a key/value cache per self-attention layer).

Loads a run of `translate --model transformer` (its `model.json` and the kept
checkpoint's `model.safetensors`) into PyTorch modules of the same architecture
(pre-norm layers, sinusoidal positions, embeddings scaled by sqrt(d), layer-norm eps
1e-5, masked keys biased by -1e9), then decodes the exported test sources (`translate
--export DIR`) the way Taper does: greedy in length-sorted batches of 256 and beam
search (width 5, length normalisation alpha, 2*width candidates a step) in batches of
64, finished sentences dropped from the batch. Attention goes through PyTorch's fused
`scaled_dot_product_attention`. Prints both times, BLEU / chrF (sacreBLEU) and, with
`--compare RUN`, how many hypotheses equal Taper's, then one JSON line.

    T=${CARGO_TARGET_DIR:-target}/release/examples   # add --data DIR where the data is not found
    $T/translate --prefixes --model transformer --epochs 1 --threads 2 --out RUN
    $T/translate --prefixes --model transformer --epochs 1 --threads 2 \
        --resume RUN --export EXPORT        # the same flags: decodes again, writes the test ids
    bench/.venv/bin/python bench/decode_peer.py RUN EXPORT --threads 2 --compare RUN

BLEU is scored on the tokenised text, as Taper scores it (sacreBLEU's warning about
that is silenced).
"""
import argparse
import json
import math
import pathlib
import time

import sacrebleu
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

PAD, BOS, EOS = 0, 2, 3
MASK_FILL = -1e9


def sinusoidal(max_len, d):
    t = torch.zeros(max_len, d, dtype=torch.float64)
    for i in range(d):
        k = (i // 2 * 2) / d
        a = torch.arange(max_len, dtype=torch.float64) / 10000.0**k
        t[:, i] = torch.sin(a) if i % 2 == 0 else torch.cos(a)
    return t.float()


class MHA(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d) for _ in range(4))

    def split(self, x):
        b, t, _ = x.shape
        return x.view(b, t, self.h, self.dh).transpose(1, 2)

    def kv(self, x):
        return self.split(self.wk(x)), self.split(self.wv(x))

    def attend(self, q, k, v, bias):
        """q (B, Tq, D), k and v (B, h, S, dh), bias broadcastable to (B, h, Tq, S)."""
        b, t, _ = q.shape
        ctx = F.scaled_dot_product_attention(self.split(self.wq(q)), k, v, attn_mask=bias)
        return self.wo(ctx.transpose(1, 2).reshape(b, t, self.h * self.dh))


class FF(nn.Module):
    def __init__(self, d, ffn):
        super().__init__()
        self.l1, self.l2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):
        return self.l2(F.relu(self.l1(x)))


class EncLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn, self.ff = MHA(d, heads), FF(d, ffn)

    def forward(self, x, bias):
        xn = self.ln1(x)
        x = x + self.attn.attend(xn, *self.attn.kv(xn), bias)
        return x + self.ff(self.ln2(x))


class DecLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn, self.cross, self.ff = MHA(d, heads), MHA(d, heads), FF(d, ffn)

    def step(self, y, cache, memory):
        """One new position y (B, 1, D); cache (k, v) of the earlier ones or None."""
        yn = self.ln1(y)
        k, v = self.self_attn.kv(yn)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        y = y + self.self_attn.attend(yn, k, v, None)
        y = y + self.cross.attend(self.ln2(y), *memory)
        return y + self.ff(self.ln3(y)), (k, v)


class Transformer(nn.Module):
    def __init__(self, spec):
        super().__init__()
        d, h, f, n = spec["hidden"], spec["heads"], spec["ffn"], spec["layers"]
        self.d = d
        self.src_embedding = nn.Embedding(spec["src_vocab"], d)
        self.tgt_embedding = nn.Embedding(spec["tgt_vocab"], d)
        self.encoder = nn.ModuleList(EncLayer(d, h, f) for _ in range(n))
        self.decoder = nn.ModuleList(DecLayer(d, h, f) for _ in range(n))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.out = nn.Linear(d, spec["tgt_vocab"])
        max_len = max(spec["max_src_len"], spec["max_tgt_len"])
        self.register_buffer("pos", sinusoidal(max_len, d), persistent=False)

    def start(self, src):
        """Per decoder layer: cross-attention keys, values and padding bias."""
        bias = ((src == PAD).float() * MASK_FILL)[:, None, None, :]  # (B, 1, 1, S)
        x = self.src_embedding(src) * math.sqrt(self.d) + self.pos[: src.shape[1]]
        for layer in self.encoder:
            x = layer(x, bias)
        x = self.encoder_norm(x)
        return [(*layer.cross.kv(x), bias) for layer in self.decoder]

    def step(self, prev, t, memories, caches):
        """Log-probabilities (B, V) of the id after `prev` (B,) at position t."""
        y = self.tgt_embedding(prev[:, None]) * math.sqrt(self.d) + self.pos[t]
        new = []
        for layer, m, c in zip(self.decoder, memories, caches):
            y, c = layer.step(y, c, m)
            new.append(c)
        return F.log_softmax(self.out(self.decoder_norm(y))[:, 0], -1), new


def select(memories, caches, rows):
    memories = [tuple(x.index_select(0, rows) for x in m) for m in memories]
    caches = [None if c is None else tuple(x.index_select(0, rows) for x in c) for c in caches]
    return memories, caches


def pad(rows):
    s = max(1, max(len(r) for r in rows))
    return torch.tensor([r + [PAD] * (s - len(r)) for r in rows])


def greedy(model, rows, max_len):
    b = len(rows)
    memories, caches = model.start(pad(rows)), [None] * len(model.decoder)
    prev = torch.full((b,), BOS)
    out, live = [[] for _ in range(b)], list(range(b))
    for t in range(max_len):
        logp, caches = model.step(prev, t, memories, caches)
        nxt = logp.argmax(-1)
        keep = []
        for row, (i, tok) in enumerate(zip(live, nxt.tolist())):
            if tok != EOS:
                out[i].append(tok)
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(live):
            live = [live[r] for r in keep]
            rows_t = torch.tensor(keep)
            memories, caches = select(memories, caches, rows_t)
            nxt = nxt.index_select(0, rows_t)
        prev = nxt
    return out


def beam(model, rows, k, alpha, max_len):
    """Taper's beam search (`taper_nlp::seq2seq::beam_search`), the candidates of all
    live sentences scored and ranked with one `topk`."""
    b = len(rows)
    memories = model.start(pad(rows))
    expand = torch.arange(b).repeat_interleave(k)
    memories, caches = select(memories, [None] * len(model.decoder), expand)
    scores = torch.full((b, k), -math.inf, dtype=torch.float64)
    scores[:, 0] = 0.0
    tokens = [[[] for _ in range(k)] for _ in range(b)]
    finished = [[] for _ in range(b)]
    live, prev = list(range(b)), torch.full((b * k,), BOS)
    for t in range(max_len):
        logp, caches = model.step(prev, t, memories, caches)
        n = len(live)
        v = logp.shape[-1]
        cand = (scores[live][:, :, None] + logp.double().view(n, k, v)).view(n, k * v)
        top_s, top_i = cand.topk(2 * k, dim=1)
        still, order, next_prev = [], [], []
        for p, i in enumerate(live):
            nxt, src_rows, done = [], [], False
            for s, flat in zip(top_s[p].tolist(), top_i[p].tolist()):
                if s == -math.inf:
                    break
                j, tok = divmod(flat, v)
                if tok == EOS:
                    toks = tokens[i][j]
                    finished[i].append((s / (len(toks) + 1) ** alpha, toks))
                    if len(finished[i]) >= k:
                        break
                elif len(nxt) < k:
                    nxt.append((tokens[i][j] + [tok], s))
                    src_rows.append(j)
                if len(nxt) >= k and len(finished[i]) + len(nxt) >= k:
                    break
            done = len(finished[i]) >= k or not nxt
            while len(nxt) < k:
                nxt.append(([], -math.inf))
                src_rows.append(0)
            tokens[i] = [h[0] for h in nxt]
            scores[i] = torch.tensor([h[1] for h in nxt], dtype=torch.float64)
            if not done:
                still.append(i)
                next_prev.extend(h[0][-1] if h[0] else BOS for h in nxt)
                order.extend(p * k + j for j in src_rows)
        if not still or t + 1 == max_len:
            live = still
            break
        live, prev = still, torch.tensor(next_prev)
        memories, caches = select(memories, caches, torch.tensor(order))
    out = []
    for i in range(b):
        if i in live:
            for toks, s in zip(tokens[i], scores[i].tolist()):
                if s > -math.inf:
                    finished[i].append((s / (len(toks) + 1) ** alpha, toks))
        out.append(max(finished[i], key=lambda f: f[0])[1] if finished[i] else [])
    return out


def decode_corpus(fn, sources, batch):
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out = [None] * len(sources)
    for j in range(0, len(order), batch):
        chunk = order[j : j + batch]
        for i, ids in zip(chunk, fn([sources[i] for i in chunk])):
            out[i] = ids
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=pathlib.Path, help="translate's run directory (model.json, checkpoints/)")
    ap.add_argument("export", type=pathlib.Path, help="translate --export directory (test.ids.tsv, ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--greedy-batch", type=int, default=256,
                    help="sentences per greedy batch (Taper's: 128, run side by side; one at a time, 256 was faster here)")
    ap.add_argument("--rounds", type=int, default=1, help="decode the corpus this many times; report each time")
    ap.add_argument("--compare", type=pathlib.Path, help="run directory whose hypotheses.{greedy,beam}.txt to compare")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    need = [a.run / "model.json", a.run / "checkpoints" / "best.json"]
    need += [a.export / f for f in ("config.json", "tgt_vocab.txt", "test_refs.txt", "test.ids.tsv")]
    for f in need:
        if not f.is_file():
            raise SystemExit(f"{f}: not found (RUN is a `translate --model transformer` run directory, "
                             "EXPORT what `translate ... --resume RUN --export EXPORT` wrote)")
    spec = json.loads((a.run / "model.json").read_text())["config"]
    if spec.get("model") != "transformer":
        raise SystemExit(f"{a.run / 'model.json'}: model is {spec.get('model')!r}, not 'transformer'")
    kept = json.loads((a.run / "checkpoints" / "best.json").read_text())["dir"]
    model = Transformer(spec)
    weights = load_file(a.run / "checkpoints" / kept / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise SystemExit(f"weights do not fit: missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.eval()
    cfg = json.loads((a.export / "config.json").read_text())
    vocab = (a.export / "tgt_vocab.txt").read_text(encoding="utf-8").split("\n")[: spec["tgt_vocab"]]
    refs = (a.export / "test_refs.txt").read_text(encoding="utf-8").split("\n")[:-1]
    sources = [[int(x) for x in line.split("\t")[0].split()]
               for line in (a.export / "test.ids.tsv").read_text().splitlines()]
    max_len = spec["max_tgt_len"]
    text = lambda ids: cfg["join"].join(vocab[i] for i in ids)
    times_g, times_b = [], []
    with torch.inference_mode():
        # Warm-up, untimed: the first calls pay for allocations and kernel choices
        # (Taper's process has run its loss evaluation before it decodes).
        decode_corpus(lambda r: greedy(model, r, max_len), sources[:256], a.greedy_batch)
        decode_corpus(lambda r: beam(model, r, a.beam, a.alpha, max_len), sources[:64], 64)
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            hyp_g = decode_corpus(lambda r: greedy(model, r, max_len), sources, a.greedy_batch)
            times_g.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hyp_b = decode_corpus(lambda r: beam(model, r, a.beam, a.alpha, max_len), sources, 64)
            times_b.append(time.perf_counter() - t0)
            print(f"greedy {times_g[-1]:.2f} s, beam {a.beam} {times_b[-1]:.2f} s", flush=True)
    hyp_g, hyp_b = [text(h) for h in hyp_g], [text(h) for h in hyp_b]
    result = {"peer": "pytorch-incremental-decoder", "torch": torch.__version__, "threads": a.threads,
              "sentences": len(sources), "beam": a.beam, "greedy_decode_seconds": min(times_g),
              "beam_decode_seconds": min(times_b), "greedy_rounds": times_g, "beam_rounds": times_b,
              "bleu_greedy": sacrebleu.corpus_bleu(hyp_g, [refs], force=True).score,
              "bleu": sacrebleu.corpus_bleu(hyp_b, [refs], force=True).score,
              "chrf_greedy": sacrebleu.corpus_chrf(hyp_g, [refs]).score,
              "chrf": sacrebleu.corpus_chrf(hyp_b, [refs]).score}
    if a.compare:
        for kind, hyp in (("greedy", hyp_g), ("beam", hyp_b)):
            theirs = (a.compare / f"hypotheses.{kind}.txt").read_text(encoding="utf-8").split("\n")[: len(hyp)]
            result[f"{kind}_equal_to_taper"] = sum(x == y for x, y in zip(hyp, theirs)) / len(hyp)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
