"""Reference values for tests/field_faults.rs (issue 21), from the tools users run.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install sacrebleu==2.6.0 scipy
    /tmp/ref/bin/python tools/field_faults_reference.py

Prints each value the Rust tests assert; the numbers are stored in the test.
"""
import gzip
import io
import warnings

import numpy as np
import sacrebleu
from scipy import stats

print("sacrebleu", sacrebleu.__version__)
chrf = sacrebleu.CHRF()
a = chrf.corpus_score(["abcdefgh", "the cat sat on the mat"],
                      [["abc", "the cat sat on the mat"]]).score
b = chrf.corpus_score(["hello world", "the cat sat on the mat"],
                      [["", "the cat sat on the mat"]]).score
print(f"row 1, chrF with a reference shorter than the order: {a:.4f}; empty reference: {b:.4f}")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    r = [stats.pearsonr(np.full(1448, 1.81), np.full(1448, 0.576)).statistic,
         stats.pearsonr(np.full(254, 0.3), np.arange(254.0)).statistic,
         stats.pearsonr(np.full(3, 0.1), np.full(3, 0.1)).statistic]
print("row 2, pearsonr of constant inputs:", r)

buf = gzip.compress(b"a,b,y\n" + b"".join(f"{i},{i * 2},{i % 2}\n".encode() for i in range(6)))
buf += gzip.compress(b"".join(f"{i},{i * 2},{i % 2}\n".encode() for i in range(6, 12)))
rows = gzip.GzipFile(fileobj=io.BytesIO(buf)).read().decode().splitlines()[1:]
print("row 4, rows read from a two-member gzip:", len(rows))
