"""Times scikit-learn on the fits `examples/regression_bench.rs` times, and prints
one JSON line of median seconds per fit with the same keys.

    bench/.venv/bin/python bench/regression_vs_sklearn.py --repeats 50

Features are standardised once, before timing, as on the Rust side. Thread pools
(OpenMP, OpenBLAS, MKL) are capped at 2 so both sides use the same cores; run it
through bench/regression.sh for the ratio table.
"""

import argparse
import json
import os
import time

# Must precede numpy's import: the BLAS pools read these when they start.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "2")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits  # noqa: E402
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402


def median_seconds(fit, warmup, repeats):
    for _ in range(warmup):
        fit()
    times = []
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()

    dx, dy = load_diabetes(return_X_y=True, scaled=False)
    dx = StandardScaler().fit_transform(dx)
    bx, by = load_breast_cancer(return_X_y=True)
    bx = StandardScaler().fit_transform(bx)
    gx, gy = load_digits(return_X_y=True)
    gx = StandardScaler().fit_transform(gx)

    def t(fit):
        return median_seconds(fit, a.warmup, a.repeats)

    # Taper's logistic solvers stop at a gradient max-norm of 1e-6; scikit-learn's
    # lbfgs stops on the same quantity, so `tol=1e-6` compares equal precision.
    # Its default (1e-4) is timed too, as what most users run.
    out = {
        "impl": "scikit-learn " + sklearn.__version__,
        "repeats": a.repeats,
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        "ols_diabetes": t(lambda: LinearRegression().fit(dx, dy)),
        "ridge_diabetes": t(lambda: Ridge(alpha=1.0).fit(dx, dy)),
        "lasso_diabetes": t(lambda: Lasso(alpha=0.1).fit(dx, dy)),
        "logistic_breast_cancer": t(
            lambda: LogisticRegression(C=1.0, tol=1e-6, max_iter=1000).fit(bx, by)
        ),
        "logistic_digits": t(
            lambda: LogisticRegression(C=1.0, tol=1e-6, max_iter=1000).fit(gx, gy)
        ),
        "logistic_breast_cancer_default_tol": t(
            lambda: LogisticRegression(C=1.0, max_iter=1000).fit(bx, by)
        ),
        "logistic_digits_default_tol": t(
            lambda: LogisticRegression(C=1.0, max_iter=1000).fit(gx, gy)
        ),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
