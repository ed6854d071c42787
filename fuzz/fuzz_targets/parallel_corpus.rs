//! Tab-separated parallel corpora (source TAB target), with and without filters.
#![no_main]
use libfuzzer_sys::fuzz_target;
use taper_nlp::data::{PairFilter, ParallelCorpus, ENG_PREFIXES};

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("pairs.tsv", data);
    if let Ok(c) = ParallelCorpus::read(&p, &PairFilter::default()) {
        assert!(!c.pairs.is_empty());
    }
    let filter = PairFilter {
        max_words: Some(10),
        prefixes: ENG_PREFIXES.iter().map(|s| s.to_string()).collect(),
        max_pairs: Some(100),
    };
    let _ = ParallelCorpus::read(&p, &filter);
});
