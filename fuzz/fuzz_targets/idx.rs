//! IDX (MNIST) files, raw and gzipped: any bytes give an `Idx` or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(idx) = taper_vision::datasets::idx::parse_idx(data) {
        assert_eq!(idx.data.len(), idx.dims.iter().product::<usize>());
    }
    let p = taper_fuzz::scratch_file("in.idx", data);
    let _ = taper_vision::datasets::read_idx(&p);
});
