"""Reference privacy figures from Opacus (PyPI) for taper-train's RDP accountant.

Run once with the bench virtual environment:
    bench/.venv/bin/python tools/dp_reference.py
and copy the printed numbers into crates/taper-train/tests/privacy.rs.
"""
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

settings = [
    # (sample rate q, noise multiplier sigma, steps, delta)
    (256 / 60000, 1.1, 60 * 60000 // 256, 1e-5),   # MNIST, 60 epochs
    (256 / 60000, 1.0, 15 * 60000 // 256, 1e-5),
    (0.01, 4.0, 10000, 1e-5),
    (0.001, 0.8, 1000, 1e-6),
    (0.1, 2.5, 500, 1e-5),
    (1.0, 5.0, 10, 1e-5),     # no sub-sampling
    (0.004, 0.55, 3000, 1e-5),  # few steps, small sigma: fractional orders matter
]
for q, sigma, steps, delta in settings:
    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    eps, alpha = acc.get_privacy_spent(delta=delta)
    print(f"({q!r}, {sigma!r}, {steps}, {delta!r}, {eps!r}, {alpha!r}),")
for target in [1.0, 3.0, 8.0]:
    s = get_noise_multiplier(target_epsilon=target, target_delta=1e-5,
                             sample_rate=256 / 60000, epochs=15, accountant="rdp",
                             epsilon_tolerance=0.001)
    print(f"noise for eps {target}: {s!r}")
