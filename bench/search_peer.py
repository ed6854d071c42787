"""sentence-transformers' side of make bench's search scaling rows
(examples/bench_search.rs is Taper's): p50 time of an exact top-10 cosine query
(`util.semantic_search`, which normalises and scores with torch), one query and a
batch of 32, against 10,000 to 1,000,000 random 384-d vectors. Prints one JSON object."""
import argparse, json, statistics, time

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--sizes", default="10000,100000,1000000")
p.add_argument("--dim", type=int, default=384)
p.add_argument("--samples", type=int, default=30)
a = p.parse_args()

import torch
from sentence_transformers import util

torch.set_num_threads(a.threads)
out = {"peer": "sentence-transformers util.semantic_search", "torch": torch.__version__, "dim": a.dim, "threads": a.threads}
for n in (int(s) for s in a.sizes.split(",")):
    vectors = torch.randn(n + 32, a.dim)
    corpus, queries = vectors[:n], vectors[n:]
    # Normalised once, as an index would hold them; the query side is normalised per call.
    corpus = util.normalize_embeddings(corpus)
    util.semantic_search(queries, corpus, top_k=10)
    one, batch = [], []
    for s in range(a.samples):
        q = queries[s % 32: s % 32 + 1]
        t = time.perf_counter()
        util.semantic_search(util.normalize_embeddings(q), corpus, top_k=10)
        one.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        util.semantic_search(util.normalize_embeddings(queries), corpus, top_k=10)
        batch.append((time.perf_counter() - t) * 1e3)
    out[f"exact_ms_p50_{n}"] = statistics.median(one)
    out[f"exact_batch32_ms_p50_{n}"] = statistics.median(batch)
print(json.dumps(out))
