//! Checkpoint weights (safetensors) loaded into a model, strict on names and shapes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = taper_fuzz::scratch_file("model.safetensors", data);
    let vm = taper_fuzz::small_varmap();
    let _ = taper_train::checkpoint::load_weights(&vm, &p);
    let _ = taper_train::checkpoint::read_tensors(&p, &candle_core::Device::Cpu);
});
