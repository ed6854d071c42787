//! Corpus BLEU as sacreBLEU 2.x computes it by default (`BLEU()`: 13a
//! tokenisation, case-sensitive, `exp` smoothing, no effective order).

use super::py_split;
use crate::{Error, Result};
use std::collections::HashMap;

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

fn ngrams(tokens: &[&str]) -> HashMap<Vec<String>, u64> {
    let mut m = HashMap::new();
    for n in 1..=MAX_ORDER {
        for w in tokens.windows(n) {
            *m.entry(w.iter().map(|s| s.to_string()).collect())
                .or_insert(0) += 1;
        }
    }
    m
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
    let mut correct = [0u64; MAX_ORDER];
    let mut total = [0u64; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0u64, 0u64);
    for (i, h) in hypotheses.iter().enumerate() {
        let mut ref_counts: HashMap<Vec<String>, u64> = HashMap::new();
        let mut ref_lens = Vec::with_capacity(references.len());
        for stream in references {
            let r = preprocess(stream[i].as_ref());
            let toks = py_split(&r);
            ref_lens.push(toks.len());
            for (g, c) in ngrams(&toks) {
                let e = ref_counts.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let hp = preprocess(h.as_ref());
        let htoks = py_split(&hp);
        sys_len += htoks.len() as u64;
        ref_len += closest_ref_len(htoks.len(), &ref_lens) as u64;
        for (g, c) in ngrams(&htoks) {
            let n = g.len() - 1;
            total[n] += c;
            if let Some(&rc) = ref_counts.get(&g) {
                correct[n] += c.min(rc);
            }
        }
    }
    Ok(compute_bleu(correct, total, sys_len, ref_len))
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
}
