//! Shared pieces of the fuzz targets: most loaders take a path, so each input is
//! written to a per-process scratch file (on tmpfs where there is one) first.

use std::path::{Path, PathBuf};

/// A scratch folder of this process, created once.
pub fn scratch_dir() -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("taper-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch_dir().join(name);
    std::fs::write(&p, bytes).expect("scratch file");
    p
}

/// The small model the checkpoint targets load into: names and shapes fixed.
pub fn small_varmap() -> candle_nn::VarMap {
    let vm = candle_nn::VarMap::new();
    let vb =
        candle_nn::VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
    candle_nn::linear(4, 3, vb.pp("fc")).expect("linear");
    vm
}
