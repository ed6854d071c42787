"""PyTorch's side of `examples/bench_gemm.rs`: f32 matmul GFLOP/s on the same shapes,
on 1 thread and on --threads. Prints one line per shape and a final JSON object."""
import argparse, json, time
import torch

SHAPES = [
    ("square_1024", 1024, 1024, 1024),
    ("mlp_fc1_fwd_b128", 128, 256, 784),
    ("mlp_fc1_wgrad_b128", 256, 784, 128),
    ("lenet_conv2_fwd_image", 64, 64, 800),
    ("cnn_conv2_fwd_image", 32, 784, 288),
    ("cnn_conv2_wgrad_image", 32, 288, 784),
    ("cnn_conv2_xgrad_image", 288, 784, 32),
    ("transformer_proj_b32_len32", 1024, 256, 256),
    ("transformer_ffn_up_b32_len32", 1024, 1024, 256),
    ("lstm_recurrent_b32_h256", 32, 1024, 256),
    ("minilm_ffn_up_32x16_tokens", 512, 1536, 384),
    ("minilm_qkv_one_sentence", 12, 384, 384),
]

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
