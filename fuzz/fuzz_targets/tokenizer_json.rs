//! Hugging Face `tokenizer.json` files, then one encoding with what was loaded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("tokenizer.json", data);
    if let Ok(t) = taper_nlp::Tokenizer::load(&p) {
        let _ = t.inner().encode("the cat sat on the mat", false);
    }
});
