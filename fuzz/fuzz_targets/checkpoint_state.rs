//! A checkpoint's JSON side: the `latest.json` pointer and the `state.json` it names.
//! The input's first line is the pointer, the rest the state.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (pointer, state) = (&data[..cut], data.get(cut + 1..).unwrap_or_default());
    let run = taper_fuzz::scratch_dir().join("run");
    let ck = run.join("checkpoints");
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir_all(ck.join("epoch-1")).unwrap();
    std::fs::write(ck.join("latest.json"), pointer).unwrap();
    std::fs::write(ck.join("epoch-1/state.json"), state).unwrap();
    if let Ok(Some(c)) = taper_train::checkpoint::read(&run, "latest") {
        let _ = c.optim_state("model", &candle_core::Device::Cpu);
        let vm = taper_fuzz::small_varmap();
        let _ = c.load_weights(&vm);
    }
});
