#!/usr/bin/env python3
"""Cost model of Taper's data-parallel training (docs/SCALING.md).

Per update every rank all-reduces the model's gradients (S bytes, f32) in buckets
of 25 MB. A ring all-reduce of b bytes over W ranks takes

    t(b) = 2 (W - 1) alpha + 2 (W - 1) / W * b / B

(alpha: per-message latency, B: each rank's link bandwidth; the ring's standard
alpha-beta model, Thakur, Rabenseifner and Gropp 2005). The step's exposed
communication is

  - without overlap (Taper today: candle's backward pass returns all gradients at
    once):  T = sum over buckets of t(bucket);
  - with overlap (PyTorch DDP, Horovod: each bucket is reduced while the backward
    pass computes the next ones, the backward pass being about 2/3 of a step):
    T = max(t(last bucket), sum - 2/3 * compute).

Scaling efficiency (weak scaling, batch per rank fixed) is compute / (compute + T).
It also prints the compute per step that 90 % efficiency needs, which holds for
any device.

Usage: python3 tools/scaling_model.py [--models MODELS.json]
The figures below are the ones measured for docs/SCALING.md; edit them there and
here together.
"""

import argparse
import json
import math

BUCKET = 25 << 20

# Networks: (name, alpha in seconds, per-rank bandwidth in bytes/s, GPU).
NETWORKS = [
    # Measured on the 2-core development machine, Open MPI 4.1 shared memory,
    # examples/bench_allreduce (latency at 1 KB; bandwidth at 1 MB).
    ("shared memory, this machine (measured)", 1.4e-6, 1.47e9, False),
    # 25 GbE: line rate 3.125 GB/s, ~90 % of it for MPI over TCP; ~25 us per message.
    ("25 GbE, TCP", 25e-6, 2.8e9, False),
    # NVLink/NVSwitch (A100-class, NCCL): ~150 GB/s bus bandwidth, ~10 us latency.
    # The last field marks GPU networks: their ranks' compute is not this CPU's, so only
    # the compute a step needs for 90 % is given.
    ("NVLink (NCCL)", 10e-6, 150e9, True),
]

# Models: (name, parameters, compute per step in seconds). Parameters and steps from
# `bench_steps --only mlp,lenet,cnn_bn,seq2seq,transformer --threads 2 --reps 10` on the
# 2-core Xeon (docs/SCALING.md); the encoder's step is an estimate: three times the
# measured forward time of its 64 sentences (32 pairs) at 886 sentences/s.
MODELS = [
    ("MLP, batch 128", 269_322, 0.00204),
    ("LeNet-5, batch 64", 184_586, 0.0239),
    ("CNN + batch norm, batch 64", 871_210, 0.103),
    ("LSTM seq2seq, batch 32", 4_326_304, 0.104),
    ("Transformer, batch 32", 6_763_424, 0.298),
    ("MiniLM-L6 encoder fine-tuning, 32 pairs (step estimated)", 22_713_728, 0.217),
]


def ring(b, w, alpha, bw):
    if w == 1:
        return 0.0
    return 2 * (w - 1) * alpha + 2 * (w - 1) / w * b / bw


def comm(params, w, alpha, bw):
    s = params * 4
    buckets = [BUCKET] * (s // BUCKET) + ([s % BUCKET] if s % BUCKET else [])
    times = [ring(b, w, alpha, bw) for b in buckets]
    return sum(times), (times[-1] if times else 0.0)


def efficiency(compute, total, last, overlap):
    exposed = max(last, total - 2 / 3 * compute) if overlap else total
    return compute / (compute + exposed) if compute > 0 else float("nan")


def needed_for(eff, total, last, overlap):
    """Compute per step (s) at which the efficiency reaches eff."""
    if not overlap:
        # c / (c + T) = e
        return eff * total / (1 - eff)
    # Exposed time max(last, T - 2c/3) falls as c grows, so the efficiency rises
    # with c and one of the two branches holds at the answer.
    c = eff * total / (1 - eff / 3)  # branch T - 2c/3 >= last: c / (c/3 + T) = e
    if total - 2 / 3 * c >= last:
        return c
    return eff * last / (1 - eff)  # branch exposed = last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", help="a JSON file: a list of [name, params, step_seconds]")
    args = ap.parse_args()
    models = MODELS
    if args.models:
        models = [tuple(m) for m in json.load(open(args.models))]
    print("| model | gradient MB | network | ranks | all-reduce per step | efficiency, no overlap | with overlap | compute per step for 90 % (no overlap / overlap) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, params, step in models:
        if params <= 0:
            continue
        for net, alpha, bw, gpu in NETWORKS:
            ranks = [2] if net.startswith("shared") else [8, 64]
            for w in ranks:
                total, last = comm(params, w, alpha, bw)
                e0 = efficiency(step, total, last, False)
                e1 = efficiency(step, total, last, True)
                n0 = needed_for(0.9, total, last, False)
                n1 = needed_for(0.9, total, last, True)
                def fmt(e):
                    return "-" if gpu or math.isnan(e) else f"{100 * e:.0f} %"

                print(
                    f"| {name} | {params * 4 / 1e6:.2f} | {net} | {w} | {total * 1e3:.3f} ms | "
                    f"{fmt(e0)} | {fmt(e1)} | {n0 * 1e3:.2f} / {n1 * 1e3:.2f} ms |"
                )


if __name__ == "__main__":
    main()
