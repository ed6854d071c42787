//! word2vec text vector files.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("vectors.txt", data);
    if let Ok(v) = taper_nlp::WordVectors::load_text(&p) {
        let _ = v.len();
    }
});
