"""gensim's Word2Vec on the same corpus and settings as `examples/word2vec.rs`.

Prints WordSim-353 Spearman (pairs with both words in the vocabulary; the others
counted as out of vocabulary) and training speed in corpus words per second
(corpus words x epochs / seconds in `train()`, vocabulary building excluded),
the same measures as the Rust example. Last stdout line: one JSON object.

    bench/.venv/bin/python bench/word2vec_gensim.py            # skip-gram on PTB, 2 workers
    bench/.venv/bin/python bench/word2vec_gensim.py --arch cbow
    bench/.venv/bin/python bench/word2vec_gensim.py --score-vectors runs/x/vectors.txt

`--score-vectors FILE` loads vectors in word2vec text format (e.g. written by the
Rust example) with gensim's `KeyedVectors.load_word2vec_format` and scores them
with the same code, so both figures come from one evaluator.
"""

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def data_root(explicit):
    if explicit:
        return Path(explicit)
    env = os.environ.get("TAPER_DATA")
    if env:
        return Path(env)
    for c in ("../shared/data", "data"):
        if Path(c).is_dir():
            return Path(c)
    return Path("data")


def read_pairs(path):
    pairs = []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.reader(f):
            if len(row) < 3:
                continue
            try:
                pairs.append((row[0].strip(), row[1].strip(), float(row[2])))
            except ValueError:
                continue  # header
    return pairs


def wordsim(kv, pairs, lowercase):
    model, human, oov = [], [], 0
    for a, b, s in pairs:
        if lowercase:
            a, b = a.lower(), b.lower()
        if a in kv.key_to_index and b in kv.key_to_index:
            model.append(float(kv.similarity(a, b)))
            human.append(s)
        else:
            oov += 1
    rho = spearmanr(model, human).statistic if len(model) > 1 else float("nan")
    return float(rho), len(model), oov


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data")
    p.add_argument("--corpus")
    p.add_argument("--wordsim")
    p.add_argument("--arch", default="sg", choices=["sg", "cbow"])
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--lr", type=float, default=0.025)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lowercase", action="store_true")
    p.add_argument("--save", help="write the vectors in word2vec text format")
    p.add_argument("--score-vectors", help="only score this word2vec text file")
    a = p.parse_args()

    root = data_root(a.data)
    ws_path = Path(a.wordsim) if a.wordsim else root / "wordsim" / "combined.csv"
    pairs = read_pairs(ws_path)

    from gensim.models import KeyedVectors, Word2Vec
    import gensim

    if a.score_vectors:
        kv = KeyedVectors.load_word2vec_format(a.score_vectors, binary=False)
        rho, n, oov = wordsim(kv, pairs, a.lowercase)
        print(f"{a.score_vectors}: {len(kv)} words of dimension {kv.vector_size}; "
              f"WordSim Spearman {rho:.4f} over {n} pairs, {oov} out of vocabulary")
        print(json.dumps({"vectors": a.score_vectors, "vocab_size": len(kv),
                          "dim": kv.vector_size, "wordsim_spearman": rho,
                          "wordsim_pairs": n, "wordsim_oov": oov}))
        return

    corpus_path = Path(a.corpus) if a.corpus else root / "text" / "ptb.train.txt"
    with open(corpus_path, encoding="utf-8") as f:
        text = f.read()
    if a.lowercase:
        text = text.lower()
    sentences = [line.split() for line in text.splitlines()]
    sentences = [s for s in sentences if s]

    model = Word2Vec(vector_size=a.dim, window=a.window, negative=a.negative, hs=0,
                     sg=1 if a.arch == "sg" else 0, min_count=a.min_count,
                     sample=a.sample, alpha=a.lr, min_alpha=a.min_lr,
                     workers=a.workers, seed=a.seed)
    t0 = time.perf_counter()
    model.build_vocab(sentences)
    vocab_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    effective, raw = model.train(sentences, total_examples=model.corpus_count,
                                 epochs=a.epochs)
    secs = time.perf_counter() - t0
    words = model.corpus_total_words * a.epochs
    wps = words / secs
    rho, n, oov = wordsim(model.wv, pairs, a.lowercase)
    print(f"gensim {gensim.__version__} Word2Vec ({a.arch}, {a.workers} workers) on "
          f"{corpus_path}: vocabulary {len(model.wv)}, {model.corpus_total_words} words")
    print(f"trained {a.epochs} epochs in {secs:.2f} s: {wps:.0f} words/s "
          f"({effective} after subsampling); vocabulary built in {vocab_s:.2f} s")
    print(f"WordSim ({ws_path}): Spearman {rho:.4f} over {n} pairs, {oov} out of vocabulary")
    for w in ("money", "stock", "president", "japan"):
        if w in model.wv.key_to_index:
            nn = ", ".join(f"{x} {s:.3f}" for x, s in model.wv.most_similar(w, topn=8))
            print(f"nearest to {w}: {nn}")
    if a.save:
        model.wv.save_word2vec_format(a.save, binary=False)
    print(json.dumps({"bench": "word2vec_gensim", "gensim": gensim.__version__,
                      "arch": a.arch, "workers": a.workers, "corpus": str(corpus_path),
                      "vocab_size": len(model.wv), "dim": a.dim, "window": a.window,
                      "negative": a.negative, "epochs": a.epochs,
                      "min_count": a.min_count, "sample": a.sample, "lr": a.lr,
                      "seed": a.seed, "train_seconds": secs, "words_per_second": wps,
                      "corpus_words": model.corpus_total_words,
                      "effective_words": effective, "wordsim_spearman": rho,
                      "wordsim_pairs": n, "wordsim_oov": oov}))


if __name__ == "__main__":
    sys.exit(main())
