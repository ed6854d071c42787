"""sentence-transformers' side of the sentence-encoder rows of `make bench`
(examples/bench_encoder.rs is Taper's): the same distinct sentences (the first
tab-separated column, in first-seen order), batch size and threads. Prints one
JSON object: encoding throughput, single-sentence latency and peak resident memory
after encoding."""
import argparse, json, os, resource, statistics, sys, time

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--corpus", required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--limit", type=int)
p.add_argument("--samples", type=int, default=200)
a = p.parse_args()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from sentence_transformers import SentenceTransformer
import sentence_transformers

torch.set_num_threads(a.threads)
with open(a.corpus, encoding="utf-8") as f:
    sentences = list(dict.fromkeys(line.rstrip("\n").split("\t")[0] for line in f))
if a.limit:
    sentences = sentences[: a.limit]
model = SentenceTransformer(a.model, device="cpu")
model.encode(sentences[:64], batch_size=a.batch_size)

start = time.perf_counter()
emb = model.encode(sentences, batch_size=a.batch_size, convert_to_numpy=True)
encode_s = time.perf_counter() - start
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 * 1.048576

picks = [i * len(sentences) // a.samples for i in range(a.samples)]
latency = []
for i in picks:
    s = time.perf_counter()
    model.encode([sentences[i]], batch_size=1)
    latency.append((time.perf_counter() - s) * 1e3)
print(json.dumps({
    "peer": "sentence-transformers",
    "sentence_transformers": sentence_transformers.__version__,
    "torch": torch.__version__,
    "sentences": len(sentences),
    "batch_size": a.batch_size,
    "threads": a.threads,
    "encode_seconds": encode_s,
    "encode_sentences_per_s": len(sentences) / encode_s,
    "latency_ms_p50": statistics.median(latency),
    "encode_peak_rss_mb": peak_mb,
    "dim": int(emb.shape[1]),
}))
