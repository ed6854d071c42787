//! Image files through the loaders' decoder, with its size and memory limits.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("in.img", data);
    if let Ok(img) = taper_vision::transforms::open_image(&p) {
        assert!(img.width() <= taper_vision::transforms::MAX_SIDE);
        let _ = taper_vision::transforms::to_tensor(&img, 1, &candle_core::Device::Cpu);
    }
});
