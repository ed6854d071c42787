"""sentence-transformers' side of the sentence-encoder rows of `make bench`
(examples/bench_encoder.rs is Taper's): the same distinct sentences (the first
tab-separated column, in first-seen order), batch size and threads. Prints one
JSON object: encoding throughput, single-sentence latency and peak resident memory
after encoding."""
import argparse, json, os, resource, statistics, sys, time

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--corpus", help="the sentences (required unless --len-sweep)")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--limit", type=int)
p.add_argument("--samples", type=int, default=200)
p.add_argument("--len-sweep", default="",
               help="only time --sweep-batches batches of sentences of exactly each of these token counts "
                    "(comma-separated; examples/bench_encoder.rs --len-sweep is Taper's side)")
p.add_argument("--sweep-batches", type=int, default=4,
               help="batches encoded per timing of --len-sweep")
a = p.parse_args()

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
from sentence_transformers import SentenceTransformer
import sentence_transformers

torch.set_num_threads(a.threads)
if a.len_sweep:
    model = SentenceTransformer(a.model, device="cpu")
    out = {"peer": "sentence-transformers", "batch_size": a.batch_size, "threads": a.threads,
           "sweep_batches": a.sweep_batches}
    for n in [int(x) for x in a.len_sweep.split(",")]:
        # "the" is one word piece: n - 2 of them plus [CLS] and [SEP] make n tokens.
        k = max(a.sweep_batches, 1)
        batch = [" ".join(["the"] * max(n - 2, 1))] * (k * a.batch_size)
        model.encode(batch, batch_size=a.batch_size)
        times, t_all = [], time.perf_counter()
        while len(times) < 5 or (len(times) < 50 and time.perf_counter() - t_all < 2.0):
            s = time.perf_counter()
            model.encode(batch, batch_size=a.batch_size)
            times.append((time.perf_counter() - s) * 1e3 / k)
        out[f"len{n}_ms_per_batch"] = statistics.median(times)
    print(json.dumps(out))
    sys.exit(0)
if not a.corpus:
    p.error("--corpus is required (unless --len-sweep)")
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
