//! WordSim-style `word,word,score` files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("pairs.csv", data);
    let _ = taper_nlp::eval::load_word_pairs(&p);
});
