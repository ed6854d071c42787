//! Corpus BLEU as sacreBLEU 2.x computes it by default (`BLEU()`: 13a
//! tokenisation, case-sensitive, `exp` smoothing, no effective order).

use super::py_split;
use crate::{Error, Result};
use std::collections::HashMap;
use std::hash::Hash;

const MAX_ORDER: usize = 4;

/// A BLEU score with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BleuScore {
    /// BLEU in [0, 100].
    pub score: f64,
    /// Clipped n-gram matches, n = 1..4.
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams, n = 1..4.
    pub total: [u64; MAX_ORDER],
    /// n-gram precisions in percent (smoothed where no n-gram matched).
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis tokens.
    pub sys_len: u64,
    /// Reference tokens (closest reference length per sentence).
    pub ref_len: u64,
}

fn is_13a_symbol(c: char) -> bool {
    ('{'..='~').contains(&c)
        || ('['..='`').contains(&c)
        || (' '..='&').contains(&c)
        || ('('..='+').contains(&c)
        || (':'..='@').contains(&c)
        || c == '/'
}

/// Replaces, left to right and without overlap, each pair of characters
/// `(a, b)` with `first(a) && second(b)` by `emit(a, b)` (Python's `re.sub` for
/// a two-character pattern).
fn sub_pairs(
    s: &[char],
    first: impl Fn(char) -> bool,
    second: impl Fn(char) -> bool,
    emit: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + 8);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && first(s[i]) && second(s[i + 1]) {
            emit(s[i], s[i + 1], &mut out);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// sacreBLEU's `13a` tokenizer (mteval-v13a): splits punctuation and symbols off
/// words, periods and commas unless next to a digit, dashes after a digit.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s: Vec<char> = Vec::with_capacity(line.len() + 2);
    s.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            s.extend([' ', c, ' ']);
        } else {
            s.push(c);
        }
    }
    s.push(' ');
    let digit = |c: char| c.is_ascii_digit();
    let dot = |c: char| c == '.' || c == ',';
    let s = sub_pairs(&s, |c| !digit(c), dot, |a, b, o| o.extend([a, ' ', b, ' ']));
    let s = sub_pairs(&s, dot, |c| !digit(c), |a, b, o| o.extend([' ', a, ' ', b]));
    let s = sub_pairs(
        &s,
        digit,
        |c| c == '-',
        |a, b, o| o.extend([a, ' ', b, ' ']),
    );
    let s: String = s.into_iter().collect();
    py_split(&s).join(" ")
}

fn ngrams<T: Hash + Eq + Clone>(tokens: &[T]) -> HashMap<&[T], u64> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// BLEU's sufficient statistics summed over sentences: clipped n-gram matches
/// and hypothesis n-grams for n = 1..4, hypothesis and (closest) reference
/// lengths. Sums of them combine across batches and processes, which BLEU
/// scores do not; [`BleuStats::score`] turns them into the corpus score.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BleuStats {
    /// Clipped n-gram matches, n = 1..4.
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams, n = 1..4.
    pub total: [u64; MAX_ORDER],
    /// Hypothesis tokens.
    pub sys_len: u64,
    /// Reference tokens (per sentence, the reference length closest to the
    /// hypothesis's, the shorter on a tie).
    pub ref_len: u64,
}

impl BleuStats {
    /// Adds one tokenised hypothesis against its references (any token type:
    /// words, or vocabulary ids as the validation BLEU of
    /// [`crate::seq2seq::Seq2SeqTrainer`] counts them). An n-gram's matches are
    /// clipped to its largest count in any one reference (Papineni et al. 2002).
    pub fn add_sentence<T: Hash + Eq + Clone>(&mut self, hypothesis: &[T], references: &[&[T]]) {
        let mut ref_counts: HashMap<&[T], u64> = HashMap::new();
        let mut ref_lens = Vec::with_capacity(references.len());
        for r in references {
            ref_lens.push(r.len());
            for (g, c) in ngrams(r) {
                let e = ref_counts.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        self.sys_len += hypothesis.len() as u64;
        self.ref_len += closest_ref_len(hypothesis.len(), &ref_lens) as u64;
        for (g, c) in ngrams(hypothesis) {
            let n = g.len() - 1;
            self.total[n] += c;
            if let Some(&rc) = ref_counts.get(g) {
                self.correct[n] += c.min(rc);
            }
        }
    }

    /// The corpus score of the sums ([`compute_bleu`]).
    pub fn score(&self) -> BleuScore {
        compute_bleu(self.correct, self.total, self.sys_len, self.ref_len)
    }
}

fn preprocess(s: &str) -> String {
    // sacreBLEU strips trailing white space (Python's rstrip) before tokenising.
    tokenize_13a(s.trim_end_matches(super::is_py_space))
}

fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &r in ref_lens {
        let d = hyp_len.abs_diff(r);
        best = match best {
            None => Some((d, r)),
            Some((bd, br)) if d < bd || (d == bd && r < br) => Some((d, r)),
            b => b,
        };
    }
    best.map(|b| b.1).unwrap_or(0)
}

/// Corpus BLEU of `hypotheses` against reference streams (`references[k][i]` is
/// the `k`-th reference of sentence `i`), as `sacrebleu.corpus_bleu`.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
) -> Result<BleuScore> {
    if references.is_empty() {
        return Err(Error::Config(
            "BLEU needs at least one reference stream".into(),
        ));
    }
    for (k, r) in references.iter().enumerate() {
        if r.len() != hypotheses.len() {
            return Err(Error::Config(format!(
                "reference stream {k} has {} sentences for {} hypotheses",
                r.len(),
                hypotheses.len()
            )));
        }
    }
    let mut stats = BleuStats::default();
    for (i, h) in hypotheses.iter().enumerate() {
        let refs: Vec<String> = references
            .iter()
            .map(|r| preprocess(r[i].as_ref()))
            .collect();
        let ref_toks: Vec<Vec<&str>> = refs.iter().map(|r| py_split(r)).collect();
        let ref_slices: Vec<&[&str]> = ref_toks.iter().map(|t| t.as_slice()).collect();
        let hp = preprocess(h.as_ref());
        stats.add_sentence(&py_split(&hp), &ref_slices);
    }
    Ok(stats.score())
}

/// BLEU from its sufficient statistics (sacreBLEU's `compute_bleu` with `exp`
/// smoothing).
pub fn compute_bleu(
    correct: [u64; MAX_ORDER],
    total: [u64; MAX_ORDER],
    sys_len: u64,
    ref_len: u64,
) -> BleuScore {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    let mut out = BleuScore {
        score: 0.0,
        correct,
        total,
        precisions,
        bp,
        sys_len,
        ref_len,
    };
    if correct.iter().all(|&c| c == 0) {
        return out;
    }
    let mut smooth = 1.0;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    let my_log = |x: f64| if x == 0.0 { -9_999_999_999.0 } else { x.ln() };
    let mean = precisions.iter().map(|&p| my_log(p)).sum::<f64>() / MAX_ORDER as f64;
    out.score = bp * mean.exp();
    out.precisions = precisions;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_13a() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(
            tokenize_13a("It costs $3.50, ok?"),
            "It costs $ 3.50 , ok ?"
        );
        assert_eq!(tokenize_13a("l'homme  est-il là?"), "l'homme est-il là ?");
        assert_eq!(tokenize_13a("2026-11-29"), "2026 - 11 - 29");
        assert_eq!(tokenize_13a("a &amp; b"), "a & b");
    }

    /// Statistics summed over id sequences in any grouping give the score
    /// `corpus_bleu` gives for the same sentences written as words.
    #[test]
    fn stats_on_ids_match_corpus_bleu_on_words() {
        let hyps: [&[u32]; 3] = [&[1, 2, 3, 4, 5], &[6, 7, 7, 8], &[9, 1, 2]];
        let refs: [&[u32]; 3] = [&[1, 2, 3, 4, 6], &[6, 7, 8], &[9, 1, 2, 3, 3, 4]];
        let words = |ids: &[u32]| {
            ids.iter()
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let expected = corpus_bleu(
            &hyps.map(words),
            &[refs.iter().map(|r| words(r)).collect::<Vec<_>>()],
        )
        .unwrap();
        let (mut a, mut b) = (BleuStats::default(), BleuStats::default());
        a.add_sentence(hyps[0], &[refs[0]]);
        for i in 1..3 {
            b.add_sentence(hyps[i], &[refs[i]]);
        }
        let sum = BleuStats {
            correct: std::array::from_fn(|n| a.correct[n] + b.correct[n]),
            total: std::array::from_fn(|n| a.total[n] + b.total[n]),
            sys_len: a.sys_len + b.sys_len,
            ref_len: a.ref_len + b.ref_len,
        };
        assert_eq!(sum.score(), expected);
        assert!(
            expected.score > 20.0 && expected.score < 80.0,
            "{}",
            expected.score
        );
        // Clipping: "7 7" against one 7 counts one unigram match.
        let mut one = BleuStats::default();
        one.add_sentence(hyps[1], &[refs[1]]);
        assert_eq!((one.correct[0], one.total[0]), (3, 4));
    }
}
