"""Reference trajectories of PyTorch optimizers and LR schedulers.

Why: Taper's Rust optimizers/schedulers are tested against these numbers, so the
problem is tiny, fixed and fully deterministic (no RNG), and all arithmetic is
float64 so that differences reflect algorithm bugs, not rounding.

Run:  bench/.venv/bin/python tools/optim_reference.py > tools/optim_reference.json
"""
import json

import torch

DT = torch.float64

W0 = [[0.5, -0.3, 0.8], [-0.1, 0.2, 0.4]]
B0 = [0.1, -0.2]
X = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.5, 2.0], [-2.0, 0.3, 0.7], [1.2, 1.1, -0.4]], dtype=DT)
Y = torch.tensor([[1.0, -1.0], [0.0, 2.0], [-1.5, 0.5], [0.7, 0.3]], dtype=DT)
STEPS = 5
SCHED_STEPS = 12


def fresh_params():
    # New leaf tensors every run so no optimizer state or grads leak between configs.
    W = torch.tensor(W0, dtype=DT, requires_grad=True)
    b = torch.tensor(B0, dtype=DT, requires_grad=True)
    return W, b


def loss_fn(W, b):
    # Mean over all 8 entries of the 4x2 residual.
    return ((X @ W.T + b - Y) ** 2).mean()


# name -> factory(params) building the optimizer with exactly the requested hyper-parameters.
OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "sgd_dampening": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3),
    "adam": lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.9, 0.999), eps=1e-8),
    "adam_wd": lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.05),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8),
    "rmsprop_momentum_centered": lambda p: torch.optim.RMSprop(
        p, lr=0.01, alpha=0.9, eps=1e-8, momentum=0.9, centered=True, weight_decay=0.01),
}


def run_optimizer(factory):
    W, b = fresh_params()
    # foreach/fused left at defaults: on CPU float64 PyTorch takes the single-tensor path.
    opt = factory([W, b])
    out = {"W": [], "b": [], "loss": []}
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(W, b)
        loss.backward()
        out["loss"].append(loss.item())  # loss BEFORE this step's update
        opt.step()
        out["W"].append(W.detach().tolist())  # params AFTER the update
        out["b"].append(b.detach().tolist())
    return out


def run_schedule(make_sched, momentum=0.0):
    # Real optimizer steps on the same problem, so PyTorch's "step optimizer before
    # scheduler" ordering is respected and no warning is emitted.
    W, b = fresh_params()
    opt = torch.optim.SGD([W, b], lr=0.1, momentum=momentum)
    sched = make_sched(opt)
    lrs = []
    for _ in range(SCHED_STEPS):
        lrs.append(opt.param_groups[0]["lr"])  # lr used by this optimizer step
        opt.zero_grad()
        loss_fn(W, b).backward()
        opt.step()
        sched.step()
    return lrs


def run_plateau():
    # ReduceLROnPlateau is driven by a fixed metric sequence; lr recorded after each call.
    W, b = fresh_params()
    opt = torch.optim.SGD([W, b], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=0.5, patience=2, threshold=1e-4,
        threshold_mode="rel", cooldown=0, min_lr=0)
    metrics = [1.0, 0.9, 0.91, 0.92, 0.93, 0.85, 0.86, 0.86, 0.86, 0.86, 0.5, 0.6]
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


S = torch.optim.lr_scheduler
SCHEDULES = {
    "steplr": (lambda o: S.StepLR(o, step_size=3, gamma=0.5), 0.0),
    "exponentiallr": (lambda o: S.ExponentialLR(o, gamma=0.9), 0.0),
    # OneCycleLR cycles momentum too, so the optimizer needs momentum (0.9).
    "onecyclelr": (lambda o: S.OneCycleLR(
        o, max_lr=0.1, total_steps=12, pct_start=0.3, anneal_strategy="cos",
        div_factor=25.0, final_div_factor=1e4, three_phase=False), 0.9),
    "cosineannealinglr": (lambda o: S.CosineAnnealingLR(o, T_max=12, eta_min=0.001), 0.0),
    "linear_then_cosine": (lambda o: S.SequentialLR(
        o, schedulers=[S.LinearLR(o, start_factor=0.25, total_iters=4),
                       S.CosineAnnealingLR(o, T_max=8, eta_min=0.0)],
        milestones=[4]), 0.0),
}


def main():
    torch.set_default_dtype(DT)
    result = {name: run_optimizer(f) for name, f in OPTIMIZERS.items()}
    for name, (make, mom) in SCHEDULES.items():
        result[name] = {"lr": run_schedule(make, mom)}
    result["reduce_lr_on_plateau"] = {"lr": run_plateau()}
    result["_meta"] = {"torch_version": torch.__version__, "dtype": "float64"}
    # json.dumps uses float.__repr__, i.e. shortest round-trip (full precision) output.
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
