//! Corpus chrF as sacreBLEU 2.x computes it by default (`CHRF()`: character
//! n-grams up to 6, no word n-grams, β = 2, white space removed, no eps
//! smoothing: precision and recall averaged over the orders that occur).

use super::py_split;
use crate::{Error, Result};
use std::collections::HashMap;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

/// A chrF score with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct ChrfScore {
    /// chrF in [0, 100].
    pub score: f64,
    /// Per order n = 1..6: (hypothesis n-grams, reference n-grams, matches).
    pub stats: [[u64; 3]; CHAR_ORDER],
}

fn counts(chars: &[char]) -> Vec<HashMap<&[char], u64>> {
    (1..=CHAR_ORDER)
        .map(|n| {
            let mut m = HashMap::new();
            for w in chars.windows(n) {
                *m.entry(w).or_insert(0) += 1;
            }
            m
        })
        .collect()
}

fn squeeze(s: &str) -> Vec<char> {
    py_split(s).concat().chars().collect()
}

fn f_score(stats: &[[u64; 3]; CHAR_ORDER]) -> f64 {
    let factor = BETA * BETA;
    let eps = 1e-16;
    let (mut avg_p, mut avg_r, mut eff) = (0.0, 0.0, 0usize);
    for &[h, r, m] in stats {
        let p = if h > 0 { m as f64 / h as f64 } else { eps };
        let rc = if r > 0 { m as f64 / r as f64 } else { eps };
        if h > 0 && r > 0 {
            avg_p += p;
            avg_r += rc;
            eff += 1;
        }
    }
    if eff == 0 {
        return 0.0;
    }
    avg_p /= eff as f64;
    avg_r /= eff as f64;
    if avg_p + avg_r == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
}

/// Corpus chrF of `hypotheses` against reference streams (`references[k][i]`),
/// as `sacrebleu.corpus_chrf`: per sentence the reference with the best chrF is
/// kept, and the statistics are summed over the corpus.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(
    hypotheses: &[H],
    references: &[Vec<R>],
) -> Result<ChrfScore> {
    if references.is_empty() {
        return Err(Error::Config(
            "chrF needs at least one reference stream".into(),
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
    let mut total = [[0u64; 3]; CHAR_ORDER];
    for (i, h) in hypotheses.iter().enumerate() {
        let hc = squeeze(h.as_ref());
        let hn = counts(&hc);
        let mut best: Option<(f64, [[u64; 3]; CHAR_ORDER])> = None;
        for stream in references {
            let rc = squeeze(stream[i].as_ref());
            let rn = counts(&rc);
            let mut st = [[0u64; 3]; CHAR_ORDER];
            for n in 0..CHAR_ORDER {
                let matches: u64 = hn[n]
                    .iter()
                    .map(|(g, &c)| c.min(rn[n].get(g).copied().unwrap_or(0)))
                    .sum();
                let refs: u64 = rn[n].values().sum();
                // sacreBLEU counts no hypothesis n-grams of an order the reference
                // is too short to have: that order then drops out of the averages
                // instead of costing precision.
                let hyps = if refs > 0 { hn[n].values().sum() } else { 0 };
                st[n] = [hyps, refs, matches];
            }
            let f = f_score(&st);
            if best.as_ref().is_none_or(|b| f > b.0) {
                best = Some((f, st));
            }
        }
        if let Some((_, st)) = best {
            for n in 0..CHAR_ORDER {
                for j in 0..3 {
                    total[n][j] += st[n][j];
                }
            }
        }
    }
    Ok(ChrfScore {
        score: f_score(&total),
        stats: total,
    })
}
