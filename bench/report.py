"""Joins the JSON figures in bench/out/ into the comparison table, prints it and
writes docs/BENCHMARKS.md (machine, date, table). Standard library only, so it
runs even where the peers could not be installed."""
import datetime, json, os, platform, sys
from pathlib import Path

out_dir, target = Path(sys.argv[1]), Path(sys.argv[2])
threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"


def load(name):
    p = out_dir / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except Exception:
        return {}


taper, torch_, skl = load("taper"), load("torch"), load("sklearn")
treg, tw2v, gensim = load("taper_regression"), load("taper_word2vec"), load("gensim")
tenc, sent = load("taper_encoder"), load("sentence")

# (case, taper dict, key, peer dict, peer key, unit, lower_is_better, peer name)
rows = [
    ("MLP 784-256-256-10 step, b128 (AdamW)", taper, "step_mlp_ms", torch_, "step_mlp_ms", "ms", True, "PyTorch"),
    ("LeNet step, b64 (AdamW)", taper, "step_lenet_ms", torch_, "step_lenet_ms", "ms", True, "PyTorch"),
    ("CNN + batch norm step, b64 (AdamW)", taper, "step_cnn_bn_ms", torch_, "step_cnn_bn_ms", "ms", True, "PyTorch"),
    ("DCGAN step (D then G), b64, widths 32 (Adam)", taper, "step_dcgan_ms", torch_, "step_dcgan_ms", "ms", True, "PyTorch"),
    ("LSTM + attention seq2seq step (b32, len 20, hidden 256, Adam)", taper, "step_seq2seq_ms", torch_, "step_seq2seq_ms", "ms", True, "PyTorch"),
    ("Transformer step (b32, len 32, d_model 256, 4 heads, 2+2 layers, Adam)", taper, "step_transformer_ms", torch_, "step_transformer_ms", "ms", True, "PyTorch"),
    ("MNIST epoch, LeNet b64, with data loading", taper, "mnist_lenet_epoch_s", torch_, "mnist_lenet_epoch_s", "s", True, "PyTorch"),
    ("time to 98.5 % MNIST test accuracy (LeNet)", taper, "mnist_lenet_seconds_to_98_5", torch_, "mnist_lenet_seconds_to_98_5", "s", True, "PyTorch"),
    ("CNN inference, batch 1", taper, "infer_cnn_b1_images_per_s", torch_, "infer_cnn_b1_images_per_s", "img/s", False, "PyTorch"),
    ("CNN inference, batch 256", taper, "infer_cnn_b256_images_per_s", torch_, "infer_cnn_b256_images_per_s", "img/s", False, "PyTorch"),
    ("preprocessing (resize, crop, rotate, flip, normalize)", taper, "preprocess_images_per_s", torch_, "preprocess_images_per_s", "img/s", False, "torchvision"),
    ("f32 matmul 1024^3", taper, "matmul_gflops", torch_, "matmul_gflops", "GFLOP/s", False, "PyTorch"),
    ("OLS fit, diabetes", treg, "ols_diabetes", skl, "ols_diabetes", "s", True, "scikit-learn"),
    ("ridge fit, diabetes", treg, "ridge_diabetes", skl, "ridge_diabetes", "s", True, "scikit-learn"),
    ("lasso fit, diabetes", treg, "lasso_diabetes", skl, "lasso_diabetes", "s", True, "scikit-learn"),
    ("logistic fit, breast cancer", treg, "logistic_breast_cancer", skl, "logistic_breast_cancer", "s", True, "scikit-learn"),
    ("multinomial logistic fit, digits", treg, "logistic_digits", skl, "logistic_digits", "s", True, "scikit-learn"),
    ("word2vec training (PTB)", tw2v, "words_per_second", gensim, "words_per_second", "words/s", False, "gensim"),
    (f"all-MiniLM-L6-v2 encoding, {tenc.get('sentences', '?')} Tatoeba sentences, b32", tenc, "encode_sentences_per_s", sent, "encode_sentences_per_s", "sent/s", False, "sentence-transformers"),
    ("all-MiniLM-L6-v2, one sentence (latency)", tenc, "latency_ms_p50", sent, "latency_ms_p50", "ms", True, "sentence-transformers"),
    ("peak resident memory after encoding the corpus", tenc, "encode_peak_rss_mb", sent, "encode_peak_rss_mb", "MB", True, "sentence-transformers"),
]


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


lines = ["| case | unit | Taper | peer | peer figure | Taper/peer time ratio |", "|---|---|---|---|---|---|"]
for case, a, ka, b, kb, unit, lower, peer in rows:
    va, vb = a.get(ka), b.get(kb)
    ratio = "–"
    if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va and vb:
        r = va / vb if lower else vb / va  # always Taper time over peer time
        ratio = f"{r:.2f}"
    lines.append(f"| {case} | {unit} | {fmt(va) if va is not None else 'not measured'} | {peer} | {fmt(vb) if vb is not None else 'not measured'} | {ratio} |")
if "step_mlp_fraction_of_matmul_ceiling" in taper:
    lines.append("")
    lines.append(f"MLP step at {100 * taper['step_mlp_fraction_of_matmul_ceiling']:.1f} % of the matmul ceiling measured through candle.")
mem = [f"Taper {fmt(taper.get('peak_rss_mb'))} MB", f"PyTorch {fmt(torch_.get('peak_rss_mb'))} MB"]
lines.append(f"Peak resident memory of the whole benchmark process: {', '.join(mem)}.")
if "search_ms_p50" in tenc:
    lines.append(f"Exact top-10 cosine query over {tenc['search_vectors']:,} embeddings: p50 {tenc['search_ms_p50']:.2f} ms (Taper).")
gemm = taper.get("gemm") or tenc.get("gemm")
if gemm:
    lines.append(f"Taper's f32 GEMM for large products: {gemm}.")
table = "\n".join(lines)
print(table)

machine = f"{platform.machine()}, {os.cpu_count()} cores, {threads} threads used, {platform.system()} {platform.release()}"
try:
    model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    machine = f"{model}; " + machine
    flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
    machine += "; " + ", ".join(f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16") if f in flags)
except Exception:
    pass
peers = torch_.get("torch")
body = f"""# Benchmarks

Written by `make bench` (`bench/run.sh`) on {datetime.date.today().isoformat()}.
Machine: {machine}. Peers: PyTorch {peers or 'not installed'}, sentence-transformers {sent.get('sentence_transformers', 'not installed')}.
Each figure is the median of repeated timings after a warm-up, both sides in the same run,
on the same shapes, batch sizes, optimizer (AdamW) and thread count. Ratio = Taper's time
over the peer's (below 1: Taper faster).

{table}
"""
notes = target.with_name("BENCHMARKS-notes.md")
if notes.exists():
    body += "\n" + notes.read_text()
target.write_text(body)
print(f"\nwrote {target}")
