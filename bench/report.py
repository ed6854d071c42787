"""Joins the JSON figures in bench/out/ into the comparison table, prints it and
writes docs/BENCHMARKS.md (machine, date, table). Standard library only, so it
runs even where the peers could not be installed."""
import datetime, json, os, platform, statistics, sys
from pathlib import Path

out_dir, target = Path(sys.argv[1]), Path(sys.argv[2])
threads = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "2"


def load(name):
    p = out_dir / f"{name}.json"
    try:
        return json.loads(p.read_text())
    except Exception:
        return {}


def rounds(name):
    """The per-round figures `NAME.r1.json`, `NAME.r2.json`, ... (bench/run.sh --rounds)."""
    found, i = [], 1
    while (out_dir / f"{name}.r{i}.json").exists():
        found.append(load(f"{name}.r{i}"))
        i += 1
    return found


def counters(name):
    """(CPU seconds, instructions) of one measured process from `perf stat -x,` output."""
    cpu = ins = None
    try:
        for line in (out_dir / f"{name}.perf").read_text().splitlines():
            f = line.split(",")
            if len(f) > 2 and f[0].replace(".", "", 1).isdigit():
                if f[2].startswith("task-clock"):
                    cpu = float(f[0]) / 1e3
                elif f[2].startswith("instructions"):
                    ins = float(f[0])
    except OSError:
        pass
    return cpu, ins


def quartiles(v):
    if len(v) < 2:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


taper, torch_, skl = load("taper"), load("torch"), load("sklearn")
taper_r, torch_r = rounds("taper"), rounds("torch")
treg, tw2v, gensim = load("taper_regression"), load("taper_word2vec"), load("gensim")
tenc, sent = load("taper_encoder"), load("sentence")
tsearch, psearch = load("taper_search"), load("search")

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
    ("preprocessing (resize, crop, bilinear rotate, flip, normalize)", taper, "preprocess_images_per_s", torch_, "preprocess_images_per_s", "img/s", False, "torchvision"),
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
# Step time against batch size (bench_steps --batch-sweep, torch_peer.py --batch-sweep).
for model, name in (("mlp", "MLP 784-256-256-10"), ("lenet", "LeNet")):
    for b in (1, 8, 32, 128, 512):
        rows.append((f"{name} step at batch {b} (AdamW)", taper, f"sweep_{model}_b{b}_ms", torch_, f"sweep_{model}_b{b}_ms", "ms", True, "PyTorch"))
for n in (8, 16, 32, 64, 128):
    key = "step_transformer_ms" if n == 32 else f"sweep_transformer_len{n}_ms"
    rows.append((f"Transformer step at sequence length {n} (b32, Adam)", taper, key, torch_, key, "ms", True, "PyTorch"))
# Exact search against corpus size (examples/bench_search.rs, bench/search_peer.py).
for n in (10_000, 100_000, 1_000_000):
    for key, what in (("exact_ms_p50", "one query"), ("exact_batch32_ms_p50", "32 queries")):
        rows.append((f"exact top-10 search, {n:,} vectors, {what}", tsearch, f"{key}_{n}", psearch, f"{key}_{n}", "ms", True, "sentence-transformers"))


def fmt(v):
    if v is None:
        return "–"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


lines = [
    "| case | unit | Taper | peer | peer figure | Taper/peer time ratio | ratio IQR (pairs) | at or below 1.0 |",
    "|---|---|---|---|---|---|---|---|",
]
def round_pairs(ours, theirs, ka, kb):
    """(Taper, peer) figures of interleaved rounds where both sides measured."""
    pairs = [(x.get(ka), y.get(kb)) for x, y in zip(ours, theirs)]
    return [(x, y) for x, y in pairs if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x and y]


def line(case, unit, peer, va, vb, lower, pairs):
    ratio, iqr, verdict = "–", "–", "–"
    # Interleaved rounds, where they exist: median figures, and the ratio's median and
    # quartiles taken round by round (each round's two sides ran back to back).
    if pairs:
        va = statistics.median(x for x, _ in pairs)
        vb = statistics.median(y for _, y in pairs)
        q1, q2, q3 = quartiles(sorted(x / y if lower else y / x for x, y in pairs))
        ratio, iqr = f"{q2:.2f}", f"{q1:.2f}-{q3:.2f} ({len(pairs)})"
        verdict = "yes" if q3 <= 1.0 else "no"
    elif isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va and vb:
        r = va / vb if lower else vb / va  # always Taper time over peer time
        ratio = f"{r:.2f}"
    return (
        f"| {case} | {unit} | {fmt(va) if va is not None else 'not measured'} | {peer} | "
        f"{fmt(vb) if vb is not None else 'not measured'} | {ratio} | {iqr} | {verdict} |"
    )


for case, a, ka, b, kb, unit, lower, peer in rows:
    pairs = round_pairs(taper_r, torch_r, ka, kb) if a is taper and b is torch_ else []
    lines.append(line(case, unit, peer, a.get(ka), b.get(kb), lower, pairs))


def bar_verdict():
    """Issue 22's bar for the six standing training steps, from the paired blocks: median
    ratio <= 1.0 with its upper quartile <= 1.1, and the overhead-bound MLP and LSTM seq2seq
    steps' medians <= 0.8. One sentence, so a run tells at once whether it meets the bar."""
    failed, measured = [], 0
    for case, _, key, _, _, _, _, _ in rows[:6]:
        pairs = round_pairs(taper_r, torch_r, key, key)
        if not pairs:
            failed.append(f"{case.split(' (')[0]} (not measured)")
            continue
        measured += 1
        q1, q2, q3 = quartiles(sorted(x / y for x, y in pairs))
        aim = 0.8 if key in ("step_mlp_ms", "step_seq2seq_ms") else 1.0
        if q2 > aim or q3 > 1.1:
            failed.append(f"{case.split(' (')[0]} (median {q2:.2f}, upper quartile {q3:.2f})")
    head = (
        "Training steps against issue 22's bar (median ratio at most 1.0 with its upper quartile "
        "at most 1.1; the MLP and LSTM seq2seq medians at most 0.8): "
    )
    if not failed:
        return head + f"all {measured} cases meet it."
    return head + f"{6 - len(failed)} of 6 meet it; not met: " + "; ".join(failed) + "."

# Transformer decoding: the same model on both sides, interleaved rounds (bench/run.sh).
dec_t, dec_p = rounds("taper_decode"), rounds("decode")
for key, what in (("greedy_decode_seconds", "greedy"), ("beam_decode_seconds", "beam 5")):
    pairs = round_pairs(dec_t, dec_p, key, key)
    if not pairs:
        continue
    same = dec_p[0].get(f"{what.split()[0]}_equal_to_taper")
    agree = f", {100 * same:.1f} % of outputs equal" if isinstance(same, (int, float)) else ""
    case = f"Transformer decoding, {what}, 1,278 eng-fra test sentences{agree}"
    lines.append(line(case, "s", "PyTorch (incremental decoder)", None, None, True, pairs))
if taper_r and torch_r:
    lines += ["", bar_verdict()]
paired_cpu = counters("taper.rall"), counters("torch.rall")
if paired_cpu[0][0] and paired_cpu[1][0]:
    (tc, ti), (pc, pi) = paired_cpu
    ins = f"; instructions {ti / 1e9:.1f} G against {pi / 1e9:.1f} G" if ti and pi else ""
    lines.append("")
    lines.append(
        f"The paired processes of all paired cases (perf stat, summed): CPU time Taper {tc:.1f} s, "
        f"PyTorch {pc:.1f} s{ins} (with each process's start-up, set-up, warm-ups and the untimed step of each block)."
    )
if "step_mlp_fraction_of_matmul_ceiling" in taper:
    lines.append("")
    lines.append(f"MLP step at {100 * taper['step_mlp_fraction_of_matmul_ceiling']:.1f} % of the matmul ceiling (Taper's GEMM, 1024³).")
mem = [f"Taper {fmt(taper.get('peak_rss_mb'))} MB", f"PyTorch {fmt(torch_.get('peak_rss_mb'))} MB"]
lines.append(f"Peak resident memory of the whole benchmark process: {', '.join(mem)}.")
if "search_ms_p50" in tenc:
    lines.append(f"Exact top-10 cosine query over {tenc['search_vectors']:,} embeddings: p50 {tenc['search_ms_p50']:.2f} ms (Taper).")
gemm = taper.get("gemm") or tenc.get("gemm")
if gemm:
    lines.append(f"Taper's f32 GEMM for large products: {gemm}.")
# The models' own products (examples/bench_gemm.rs; bench/gemm_peer.py), where measured.
tg, tgc, pg = load("taper_gemm"), load("taper_gemm_crate"), load("torch_gemm")
if tg:
    nt = tg.get("threads", threads)

    def cell(d, n):
        a, b = d.get(f"{n}_1t_gflops"), d.get(f"{n}_{nt}t_gflops", d.get(f"{n}_1t_gflops"))
        ok = isinstance(a, (int, float)) and isinstance(b, (int, float))
        return f"{a:.0f} / {b:.0f}" if ok else "–"

    lines += [
        "",
        f"f32 GEMM on the benchmark models' products, GFLOP/s on 1 thread / {nt} "
        "(`bench_gemm`; the `gemm` crate column with `TAPER_BLAS=off`; `bench/gemm_peer.py`):",
        "",
        f"| product | Taper ({tg.get('gemm', '?')}) | `gemm` crate | PyTorch |",
        "|---|---|---|---|",
    ]
    for n in [k[: -len("_1t_gflops")] for k in tg if k.endswith("_1t_gflops")]:
        lines.append(f"| {n} | {cell(tg, n)} | {cell(tgc, n)} | {cell(pg, n)} |")
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
on the same shapes, batch sizes, optimizer (AdamW) and thread count, pinned to the same CPUs.
Ratio = Taper's time over the peer's (below 1: Taper
faster). The training steps, the matmul, CNN inference and preprocessing run paired: both processes alive, taking turns
in blocks of a few steps (`bench/run.sh`); their ratio is the median over pairs of
neighbouring blocks, with its interquartile range, and a case is "at or below 1.0" when
its upper quartile is. Decoding runs in whole interleaved runs (its pairs). The other rows
are one run each.

{table}
"""
notes = target.with_name("BENCHMARKS-notes.md")
if notes.exists():
    body += "\n" + notes.read_text()
target.write_text(body)
print(f"\nwrote {target}")
