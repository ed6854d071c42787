//! CIFAR-10 binary batches.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("data_batch.bin", data);
    if let Ok((x, y)) = taper_vision::datasets::read_cifar_file(&p) {
        assert_eq!(x.dims()[0], y.dims()[0]);
    }
});
