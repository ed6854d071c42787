//! The embedded digits' CSV format (gzipped or plain).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("digits.csv", data);
    let _ = taper_vision::datasets::load_digits(&p);
});
