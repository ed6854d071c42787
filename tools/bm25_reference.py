"""Reference BM25 scores for Taper's test (`rank_bm25.BM25Okapi`, its defaults
k1 = 1.5, b = 0.75, epsilon = 0.25), on the small corpus below tokenised as
Taper's `search::words` does (lower-cased alphanumeric runs):

    python tools/bm25_reference.py    # needs `pip install rank_bm25`
"""
import json
import re

from rank_bm25 import BM25Okapi

DOCS = [
    "The cat sat on the mat.",
    "A dog and a cat play in the park.",
    "Dogs run; cats sleep.",
    "The park is green and the sky is blue.",
    "I like green tea.",
    "the the the cat",
]
QUERIES = ["cat", "green park", "the dog", "tea cat sky", "absent words"]

def words(text):
    return [w.lower() for w in re.split(r"[^\w]|_", text) if w]

bm25 = BM25Okapi([words(d) for d in DOCS])
print(json.dumps({"docs": DOCS, "queries": QUERIES,
                  "scores": [[float(f"{s:.9g}") for s in bm25.get_scores(words(q))] for q in QUERIES]}))
