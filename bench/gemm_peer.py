"""PyTorch's side of `examples/bench_gemm.rs`: f32 matmul GFLOP/s on the same shapes,
on 1 thread and on --threads. Prints one line per shape and a final JSON object."""
import argparse, json, time
from pathlib import Path
import torch

# The products `examples/bench_gemm.rs` times: [name, m, n, k] each.
SHAPES = json.loads((Path(__file__).with_name("gemm_shapes.json")).read_text())

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seconds", type=float, default=0.3)
args = p.parse_args()
out = {"torch": torch.__version__, "threads": args.threads}
for name, m, n, k in SHAPES:
    a, b, c = torch.rand(m, k), torch.rand(k, n), torch.empty(m, n)
    flop = 2.0 * m * n * k
    line = f"{name} ({m}x{n}x{k}):"
    for threads in sorted({1, args.threads}):
        torch.set_num_threads(threads)
        start, per_batch = time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds / 4:
            torch.mm(a, b, out=c)
            per_batch += 1
        per_batch = max(per_batch // 4, 1)
        rates, start = [], time.perf_counter()
        while len(rates) < 5 or time.perf_counter() - start < args.seconds:
            t = time.perf_counter()
            for _ in range(per_batch):
                torch.mm(a, b, out=c)
            rates.append(flop * per_batch / (time.perf_counter() - t) / 1e9)
        rates.sort()
        rate = rates[len(rates) // 2]
        line += f" {threads}t {rate:.0f} GFLOP/s"
        out[f"{name}_{threads}t_gflops"] = rate
    print(line)
print(json.dumps(out))
