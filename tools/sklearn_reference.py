"""Reference coefficients for taper-regression's tests, computed by scikit-learn.

Reads the very files the Rust loaders read (assets/), so both sides see
identical numbers. Run with: bench/.venv/bin/python tools/sklearn_reference.py
The printed values are pasted into crates/taper-regression/tests/sklearn_reference.rs.
"""

import gzip
import pathlib

import numpy as np
import sklearn
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"


def load_diabetes_raw():
    with gzip.open(ASSETS / "diabetes_data_raw.csv.gz", "rt") as f:
        x = np.loadtxt(f)
    with gzip.open(ASSETS / "diabetes_target.csv.gz", "rt") as f:
        y = np.loadtxt(f)
    return x, y


def load_counted(name):
    data = np.loadtxt(ASSETS / name, delimiter=",", skiprows=1)
    return data[:, :-1], data[:, -1].astype(int)


def load_breast_cancer():
    return load_counted("breast_cancer.csv")


def show(name, model):
    coef = np.atleast_1d(np.ravel(model.coef_))
    intercept = np.atleast_1d(np.ravel(model.intercept_))
    print(f"// {name}")
    print("coef = [" + ", ".join(repr(float(c)) for c in coef) + "]")
    print("intercept = [" + ", ".join(repr(float(c)) for c in intercept) + "]")


def main():
    print(f"// scikit-learn {sklearn.__version__}, numpy {np.__version__}")
    x, y = load_diabetes_raw()
    show("LinearRegression()", LinearRegression().fit(x, y))
    show("Ridge(alpha=1.0)", Ridge(alpha=1.0, solver="cholesky").fit(x, y))
    show("Lasso(alpha=0.1)", Lasso(alpha=0.1, max_iter=1_000_000, tol=1e-12).fit(x, y))
    show(
        "ElasticNet(alpha=0.1, l1_ratio=0.5)",
        ElasticNet(alpha=0.1, l1_ratio=0.5, max_iter=1_000_000, tol=1e-12).fit(x, y),
    )

    xb, yb = load_breast_cancer()
    # Population standard deviation (ddof=0), as StandardScaler uses.
    xs = (xb - xb.mean(axis=0)) / xb.std(axis=0)
    # The default solver (L-BFGS) stops on a projected-gradient test and is accurate to
    # ~1e-6 only; Newton-Cholesky reaches the optimum to ~1e-10 and is the tight reference.
    show(
        "LogisticRegression(C=1.0) on standardised breast cancer (lbfgs)",
        LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(xs, yb),
    )
    show(
        "LogisticRegression(C=1.0, solver='newton-cholesky') on standardised breast cancer",
        LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000, solver="newton-cholesky").fit(xs, yb),
    )

    xi, yi = load_counted("iris.csv")
    xis = (xi - xi.mean(axis=0)) / xi.std(axis=0)
    show(
        "LogisticRegression(C=1.0, solver='newton-cholesky') multinomial on standardised iris",
        LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000, solver="newton-cholesky").fit(xis, yi),
    )

    ols_inference(x, y)


def ols_inference(x, y):
    """Classical OLS standard errors and two-sided p-values, from the textbook formulas."""
    from scipy import stats

    n, p = x.shape
    a = np.column_stack([np.ones(n), x])
    beta, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ beta
    df = n - p - 1
    sigma2 = resid @ resid / df
    se = np.sqrt(sigma2 * np.diag(np.linalg.inv(a.T @ a)))
    t = beta / se
    pv = 2 * stats.t.sf(np.abs(t), df)
    print("// OLS inference on diabetes: [intercept, coefficients...]")
    print("se = [" + ", ".join(repr(float(v)) for v in se) + "]")
    print("p = [" + ", ".join(repr(float(v)) for v in pv) + "]")


if __name__ == "__main__":
    main()
