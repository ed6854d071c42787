"""Golden BLEU / chrF values for crates/taper-nlp/tests/metrics.rs.

Run once (sacrebleu from PyPI; its version is recorded in the output):
    bench/.venv/bin/pip install sacrebleu
    bench/.venv/bin/python tools/bleu_reference.py
writes crates/taper-nlp/tests/data/bleu_reference.json: each case's hypotheses,
reference streams, and sacreBLEU's default corpus BLEU and chrF.
"""
import json
import pathlib

import sacrebleu

CASES = {
    "basic": (
        ["The cat sat on the mat.", "There is a dog in the garden!", "I like green apples, not red ones."],
        [["The cat is sitting on the mat.", "A dog is in the garden.", "I like green apples, not red ones."]],
    ),
    "empty_hypothesis": (
        ["", "he is a teacher .", "we are happy"],
        [["she is a doctor .", "he is a teacher .", "we are very happy ."]],
    ),
    "all_empty": (
        ["", ""],
        [["something here", "and there"]],
    ),
    "no_4gram_match": (
        ["the quick brown dog jumps", "over lazy fox"],
        [["the quick brown fox jumps", "over the lazy dog"]],
    ),
    "unigrams_only": (
        ["dog cat", "bird"],
        [["cat dog", "a bird"]],
    ),
    "french_unicode": (
        [
            "Je suis très content de te voir.",
            "Il n'est pas là aujourd'hui.",
            "« Où est la bibliothèque ? »",
            "Elle a 3,5 ans et mesure 1.20 m.",
            "C'était l'été à Noël — étrange…",
        ],
        [[
            "Je suis très heureux de te voir.",
            "Il n'est pas ici aujourd'hui.",
            "« Où se trouve la bibliothèque ? »",
            "Elle a 3,5 ans et elle mesure 1.20 m.",
            "C'était l'été à Noël — étrange…",
        ]],
    ),
    "two_references": (
        ["it is a guide to action which ensures that the military always obeys the commands of the party",
         "he read the book because he was interested in world history"],
        [
            ["it is a guide to action that ensures that the military will forever heed party commands",
             "he was interested in world history because he read the book"],
            ["it is the guiding principle which guarantees the military forces always being under the command of the party",
             "he read the book because he was interested in world history"],
        ],
    ),
    "symbols_13a": (
        ["a-b c&amp;d (e) [f] {g} 1,000.5 x/y $5 it's", "2026-11-29 -- well.. ok,ok"],
        [["a - b c & d ( e ) [ f ] { g } 1,000.5 x / y $ 5 it's", "2026-11-29 - - well . . ok , ok"]],
    ),
    "dates": (
        ["2026-11-29", "1999-01-02", "2001-12-31"],
        [["2026-11-29", "1999-01-20", "2001-12-31"]],
    ),
}

out = {"sacrebleu_version": sacrebleu.__version__, "cases": {}}
for name, (hyps, refs) in CASES.items():
    bleu = sacrebleu.corpus_bleu(hyps, refs)
    chrf = sacrebleu.corpus_chrf(hyps, refs)
    out["cases"][name] = {
        "hypotheses": hyps,
        "references": refs,
        "bleu": bleu.score,
        "chrf": chrf.score,
    }
    print(f"{name:18s} BLEU {bleu.score:9.4f}  chrF {chrf.score:9.4f}")
path = pathlib.Path(__file__).resolve().parent.parent / "crates/taper-nlp/tests/data/bleu_reference.json"
path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
print("wrote", path)
