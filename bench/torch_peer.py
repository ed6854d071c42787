"""PyTorch / torchvision side of `make bench`: the same cases as
examples/bench_steps.rs, same shapes, batch sizes, optimizer and thread count.
Prints one JSON object.

With --baton (bench/run.sh), the matmul and training steps are timed paired with
bench_steps: both processes alive, taking turns block by block (see Baton)."""
import argparse, atexit, gzip, json, os, resource, sys, time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=20)
p.add_argument("--mnist", default=None, help="MNIST folder: also time an epoch and time to 98.5 %")
p.add_argument("--steps-only", action="store_true", help="only the matmul and training-step cases (one round of make bench)")
p.add_argument("--batch-sweep", default="", help="also time the MLP and LeNet steps at these batch sizes (comma-separated)")
p.add_argument("--len-sweep", default="", help="also time the Transformer step at these sequence lengths (comma-separated)")
p.add_argument("--only", default="", help="only the cases whose names contain one of these (comma-separated), as bench_steps --only; the sweeps run whenever asked")
p.add_argument("--baton", default="", help="MINE,THEIRS: named pipes shared with bench_steps --baton; time the steps in blocks, taking turns")
p.add_argument("--blocks", type=int, default=15, help="blocks per paired case (with --baton)")
p.add_argument("--rounds-out", default="", help="where each block's figures go (with --baton); {r} becomes the block's number, from 1")
args = p.parse_args()


class Baton:
    """One side of the turn-taking with bench_steps (its `Baton` is the other): a byte
    through two named pipes, `B` hands the turn over, `D` says the sender finished."""

    def __init__(self, mine, theirs):
        # Read-write, so that neither open waits for the other process.
        self.rx, self.tx = os.open(mine, os.O_RDWR), os.open(theirs, os.O_RDWR)
        self.peer_done = False
        atexit.register(self.finish)
        self.take()

    def take(self):
        if not self.peer_done:
            self.peer_done = os.read(self.rx, 1) == b"D"

    def pass_(self):
        if not self.peer_done:
            os.write(self.tx, b"B")
            self.take()

    def finish(self):
        if not self.peer_done:
            self.peer_done = True
            os.write(self.tx, b"D")


# The turn before importing torch: its import would otherwise run during the peer's block.
baton = Baton(*args.baton.split(",")) if args.baton else None
rounds = [{} for _ in range(max(1, args.blocks))] if baton else []
last_blocks = []

import torch
import torch.nn as nn
import torch.nn.functional as F
only = [o for o in args.only.split(",") if o]
want = lambda case: not only or any(o in case for o in only)
torch.set_num_threads(args.threads)
torch.manual_seed(0)
out = {"threads": args.threads, "torch": torch.__version__}


def median(v):
    return sorted(v)[len(v) // 2]  # the upper middle, as bench_steps


def timed(f, reps):
    t = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        t.append((time.perf_counter() - s) * 1e3)
    return median(t)


def median_ms(f, warmup, reps):
    """Median ms of `reps` calls after `warmup`; paired, the median of the blocks'
    medians, each block one untimed call and `reps` timed ones, then the turn passed."""
    for _ in range(warmup):
        f()
    if not baton:
        return timed(f, reps)
    last_blocks.clear()
    for b in range(len(rounds)):
        if b:
            f()
        last_blocks.append(timed(f, reps))
        baton.pass_()
    return median(last_blocks)


def put(key, ms, conv=lambda m: m):
    """out[key] = conv(ms), and paired, each block's conv(median) in its round."""
    out[key] = conv(ms)
    for r, m in zip(rounds, last_blocks):  # rounds is empty when not paired
        r[key] = conv(m)


if want("matmul") or want("mlp"):  # as bench_steps, which times its GEMM with the MLP
    a = torch.randn(1024, 1024)
    put("matmul_gflops", median_ms(lambda: (a @ a).sum().item(), 2, 10), lambda ms: 2 * 1024**3 / (ms / 1e3) / 1e9)


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 5), nn.Conv2d(32, 64, 5)
        self.fc1, self.fc2, self.drop = nn.Linear(1024, 128), nn.Linear(128, 10), nn.Dropout(0.25)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(self.drop(F.relu(self.fc1(x.flatten(1)))))


def conv_bn(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.Sequential(conv_bn(1, 32), conv_bn(32, 32), nn.MaxPool2d(2), conv_bn(32, 64), conv_bn(64, 64), nn.MaxPool2d(2))
        self.drop1, self.fc1, self.drop2, self.fc2 = nn.Dropout(0.15), nn.Linear(64 * 7 * 7, 256), nn.Dropout(0.3), nn.Linear(256, 10)

    def forward(self, x):
        x = self.drop1(self.blocks(x)).flatten(1)
        return self.fc2(self.drop2(F.relu(self.fc1(x))))


def step_case(model, x, y, reps):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return median_ms(step, 5, reps)


def make_mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


mlp = make_mlp()
lab = lambda n: torch.arange(n) % 10
if want("mlp"):
    put("step_mlp_ms", step_case(mlp, torch.randn(128, 784), lab(128), args.reps))
if want("lenet"):
    put("step_lenet_ms", step_case(LeNet(), torch.randn(64, 1, 28, 28), lab(64), args.reps))
for b in (int(v) for v in args.batch_sweep.split(",") if v):
    put(f"sweep_mlp_b{b}_ms", step_case(make_mlp(), torch.randn(b, 784), lab(b), args.reps))
    put(f"sweep_lenet_b{b}_ms", step_case(LeNet(), torch.randn(b, 1, 28, 28), lab(b), min(args.reps, 10)))
if want("cnn_bn"):
    put("step_cnn_bn_ms", step_case(Cnn(), torch.randn(64, 1, 28, 28), lab(64), min(args.reps, 10)))


class Gen(nn.Module):
    """Taper's DcganConfig::mnist(): noise 100, widths 32."""

    def __init__(self, z=100, w=32):
        super().__init__()
        self.w = w
        self.fc, self.bn0 = nn.Linear(z, 2 * w * 49, bias=False), nn.BatchNorm2d(2 * w)
        self.up1, self.bn1 = nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w)
        self.up2 = nn.ConvTranspose2d(w, 1, 4, 2, 1, bias=False)

    def forward(self, z):
        x = F.relu(self.bn0(self.fc(z).view(-1, 2 * self.w, 7, 7)))
        return torch.tanh(self.up2(F.relu(self.bn1(self.up1(x)))))


class Disc(nn.Module):
    def __init__(self, w=32):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, w, 4, 2, 1), nn.Conv2d(w, 2 * w, 4, 2, 1, bias=False)
        self.bn2, self.fc = nn.BatchNorm2d(2 * w), nn.Linear(2 * w * 49, 1)

    def forward(self, x):
        x = F.leaky_relu(self.conv1(x), 0.2)
        return self.fc(F.leaky_relu(self.bn2(self.conv2(x)), 0.2).flatten(1)).squeeze(1)


def dcgan_step_ms(reps):
    g, d = Gen(), Disc()
    og = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real, ones, zeros = torch.rand(64, 1, 28, 28) * 2 - 1, torch.ones(64), torch.zeros(64)
    bce = F.binary_cross_entropy_with_logits

    def step():
        fake = g(torch.randn(64, 100))
        od.zero_grad(set_to_none=True)
        (bce(d(real), ones) + bce(d(fake.detach()), zeros)).backward()
        od.step()
        og.zero_grad(set_to_none=True)
        # The discriminator frozen for the generator's step, as Taper's Dcgan does
        # (no discriminator weight gradients): both sides do the same work.
        d.requires_grad_(False)
        bce(d(fake), ones).backward()
        d.requires_grad_(True)
        og.step()

    return median_ms(step, 3, reps)


if want("dcgan"):
    put("step_dcgan_ms", dcgan_step_ms(min(args.reps, 10)))

# Sequence-to-sequence steps, same sizes and synthetic ids as bench_steps.
VOCAB = 4000


def ids(rows, length, salt):
    return torch.tensor([[4 + (i * 7919 + j * 104729 + salt * 31) % (VOCAB - 4) for j in range(length)]
                         for i in range(rows)])


def seq_step_ms(model, length, smoothing, reps):
    src, tgt = ids(32, length, 1), ids(32, length, 2)
    bos, eos = torch.full((32, 1), 2), torch.full((32, 1), 3)
    tin, tout = torch.cat([bos, tgt], 1), torch.cat([tgt, eos], 1)
    lens = torch.full((32,), length)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(src, lens, tin)
        F.cross_entropy(logits.reshape(-1, VOCAB), tout.reshape(-1), ignore_index=0,
                        label_smoothing=smoothing).backward()
        opt.step()

    return median_ms(step, 3, reps)


class Tr(nn.Module):
    """Pre-norm Transformer with sinusoidal positions, as taper-nlp's."""

    def __init__(self, d=256, heads=4, ffn=1024, layers=2, p=0.1, max_len=64):
        super().__init__()
        self.d = d
        self.src_emb, self.tgt_emb = nn.Embedding(VOCAB, d), nn.Embedding(VOCAB, d)
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.pow(10000.0, torch.arange(0, d, 2) / d)
        pe = torch.zeros(max_len, d)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos / div), torch.cos(pos / div)
        self.register_buffer("pe", pe)
        self.tr = nn.Transformer(d, heads, layers, layers, ffn, p, batch_first=True, norm_first=True)
        self.out = nn.Linear(d, VOCAB)
        self.drop = nn.Dropout(p)

    def forward(self, src, lens, tin):
        s = self.drop(self.src_emb(src) * self.d ** 0.5 + self.pe[: src.shape[1]])
        t = self.drop(self.tgt_emb(tin) * self.d ** 0.5 + self.pe[: tin.shape[1]])
        causal = nn.Transformer.generate_square_subsequent_mask(tin.shape[1])
        y = self.tr(s, t, tgt_mask=causal, src_key_padding_mask=src == 0, memory_key_padding_mask=src == 0)
        return self.out(y)


try:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seq2seq_torch import Seq2Seq

    spec = dict(emb=256, hidden=256, layers=1, dropout=0.1, src_vocab=VOCAB, tgt_vocab=VOCAB)
    if want("seq2seq"):
        put("step_seq2seq_ms", seq_step_ms(Seq2Seq(spec), 20, 0.0, min(args.reps, 10)))
except Exception as e:  # sacrebleu missing (imported by the script): report the rest
    out["seq2seq_error"] = str(e)
if want("transformer"):
    put("step_transformer_ms", seq_step_ms(Tr(), 32, 0.1, min(args.reps, 10)))
for n in (int(v) for v in args.len_sweep.split(",") if v):
    put(f"sweep_transformer_len{n}_ms", seq_step_ms(Tr(max_len=n + 1), n, 0.1, min(args.reps, 10)))


def finish():
    """Each block's figures to its round file (paired), then the JSON line."""
    for i, r in enumerate(rounds):
        r["threads"] = args.threads
        Path(args.rounds_out.replace("{r}", str(i + 1))).write_text(json.dumps(r) + "\n")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    sys.exit(0)


if args.steps_only:
    finish()

if want("infer"):
    cnn = Cnn().eval()
    with torch.no_grad():
        for b in (1, 256):
            x = torch.randn(b, 1, 28, 28)
            ms = median_ms(lambda: cnn(x).sum().item(), 3, 400 if b == 1 else 5)
            put(f"infer_cnn_b{b}_images_per_s", ms, lambda ms, b=b: b / (ms / 1e3))

try:
    import torchvision.transforms.v2 as T
    from torchvision.io import decode_image, ImageReadMode

    assets = Path(__file__).resolve().parent.parent / "assets"
    photos = [decode_image(str(assets / n), mode=ImageReadMode.RGB) for n in ("china.jpg", "flower.jpg")]
    # Bilinear rotation, as Taper's RandomRotation (torchvision's default is nearest).
    rot = T.RandomRotation(15, interpolation=T.InterpolationMode.BILINEAR)
    pipe = T.Compose([T.Resize((256, 256), antialias=True), T.RandomCrop(224), rot, T.RandomHorizontalFlip(),
                      T.ToDtype(torch.float32, scale=True), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    batch = [photos[i % 2] for i in range(32)]
    if want("preprocess"):
        ms = median_ms(lambda: torch.stack([pipe(im) for im in batch]), 2, 20)
        put("preprocess_images_per_s", ms, lambda ms: 32 / (ms / 1e3))
except Exception as e:  # torchvision missing or incompatible: report the rest
    out["preprocess_error"] = str(e)


def idx(path):
    raw = gzip.open(path).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd)]
    return torch.frombuffer(bytearray(raw[4 + 4 * nd:]), dtype=torch.uint8).reshape(dims)


if args.mnist:
    d = Path(args.mnist)
    norm = lambda t: ((t.float() / 255.0) - 0.1307) / 0.3081
    x, y = norm(idx(d / "train-images-idx3-ubyte.gz")).unsqueeze(1), idx(d / "train-labels-idx1-ubyte.gz").long()
    tx, ty = norm(idx(d / "t10k-images-idx3-ubyte.gz")).unsqueeze(1), idx(d / "t10k-labels-idx1-ubyte.gz").long()
    model = LeNet()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64, shuffle=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=len(loader))

    def evaluate():
        model.eval()
        with torch.no_grad():
            acc = sum((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item() for i in range(0, 10000, 1000)) / 10000
        model.train()
        return acc

    t0, eval_s, reached = time.perf_counter(), 0.0, None
    model.train()
    for i, (bx, by) in enumerate(loader):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(bx), by).backward()
        opt.step()
        sched.step()
        if reached is None and (i + 1) % 100 == 0:
            e = time.perf_counter()
            acc = evaluate()
            eval_s += time.perf_counter() - e
            if acc >= 0.985:
                reached = time.perf_counter() - t0 - eval_s
    out["mnist_lenet_epoch_s"] = time.perf_counter() - t0 - eval_s
    out["mnist_lenet_epoch_test_accuracy"] = evaluate()
    out["mnist_lenet_seconds_to_98_5"] = reached

finish()
