"""Reference sentence embeddings for Taper's test of the pretrained encoder.

Writes sentence-transformers' embeddings of a fixed set of sentences (short,
long past 256 tokens, empty, accents, CJK, emoji) for the model folder given,
rounded to 7 significant digits, as JSON:

    python tools/sentence_reference.py ../shared/models/all-MiniLM-L6-v2 \
        > crates/taper-nlp/tests/data/minilm_reference.json

Needs `pip install sentence-transformers` (the bench venv has it).
"""
import json
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "A man is playing a guitar.",
    "hello",
    "",
    "   surrounding white space   ",
    "Crème brûlée à l'école, naïve façade — São Paulo.",
    "我喜欢在公园里散步。東京は日本の首都です。",
    "Good morning 🌞🚀 let's go! 👍🏽",
    "The quick brown fox jumps over the lazy dog. " * 40,
]

def main():
    model = SentenceTransformer(sys.argv[1], device="cpu")
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=4, convert_to_numpy=True)
    out = {
        "model": sys.argv[1].rstrip("/").split("/")[-1],
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "embeddings": [[float(f"{v:.7g}") for v in row] for row in emb.tolist()],
    }
    json.dump(out, sys.stdout, ensure_ascii=False)

if __name__ == "__main__":
    main()
