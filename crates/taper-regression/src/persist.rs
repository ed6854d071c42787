//! Crash-safe file output and tensor conversion shared by the models' save/load.
//!
//! Every file is written to a temporary name in its destination folder,
//! flushed to disk, then renamed over the target: a crash leaves either the
//! old file or the new one, never a torn mix.

use crate::error::{Error, Result};
use crate::preprocessing::StandardScaler;
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, DVector};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    // pid + counter keeps concurrent writers (threads or processes) from sharing a temp file.
    let unique = format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    target.with_file_name(unique)
}

/// Writes `target` atomically: `write` fills a temp file beside it, which is fsynced and renamed.
pub fn atomic_write<F>(target: &Path, write: F) -> Result<()>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let tmp = tmp_path(target);
    let result = (|| {
        write(&tmp)?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, target).map_err(|e| Error::io(target, e))?;
        // The rename itself must reach the disk too; some platforms cannot open folders, so this is best effort.
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Atomically writes `bytes` to `target`.
pub fn atomic_write_bytes(target: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write(target, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// The JSON file that accompanies a safetensors file: same stem, `.json` extension.
pub fn settings_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

pub(crate) fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    atomic_write(path, |tmp| {
        // safetensors writes through its own private (0600) temp file; creating ours first
        // records the umask-respecting mode an ordinary new file gets, restored afterwards.
        let perms = std::fs::File::create(tmp)
            .and_then(|f| f.metadata())
            .map(|m| m.permissions())
            .map_err(|e| Error::io(tmp, e))?;
        candle_core::safetensors::save(tensors, tmp).map_err(|e| Error::ModelFile {
            path: path.to_path_buf(),
            message: format!("writing safetensors: {e}"),
        })?;
        std::fs::set_permissions(tmp, perms).map_err(|e| Error::io(tmp, e))
    })
}

pub(crate) fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        message: format!("not a readable safetensors file: {e}"),
    })
}

pub(crate) fn save_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    atomic_write_bytes(path, &text)
}

pub(crate) fn load_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a settings file, checking its `format` tag and `version` before the fields,
/// so loading the wrong kind of model says so instead of reporting a missing field.
pub(crate) fn load_meta<T: serde::de::DeserializeOwned>(path: &Path, format: &str) -> Result<T> {
    let value: serde_json::Value = load_json(path)?;
    let found = value
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or("(none)");
    let version = value.get("version").and_then(|v| v.as_u64());
    if found != format || version != Some(1) {
        return Err(Error::ModelFile {
            path: path.to_path_buf(),
            message: format!(
                "expected format {format:?} version 1, found {found:?} version {version:?}"
            ),
        });
    }
    serde_json::from_value(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn vector_tensor(v: &DVector<f64>, device: &Device, dtype: DType) -> Result<Tensor> {
    Ok(Tensor::from_slice(v.as_slice(), v.len(), device)?.to_dtype(dtype)?)
}

pub(crate) fn matrix_tensor(m: &DMatrix<f64>, device: &Device, dtype: DType) -> Result<Tensor> {
    // nalgebra is column-major and candle row-major, so go through the transpose's storage.
    let row_major: Vec<f64> = m.transpose().as_slice().to_vec();
    Ok(Tensor::from_vec(row_major, (m.nrows(), m.ncols()), device)?.to_dtype(dtype)?)
}

fn get<'a>(map: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    map.get(name)
        .ok_or_else(|| Error::param("tensors", format!("no tensor named {name:?}")))
}

pub(crate) fn tensor_vector(
    map: &HashMap<String, Tensor>,
    name: &str,
    len: usize,
) -> Result<DVector<f64>> {
    let t = get(map, name)?;
    if t.elem_count() != len || t.rank() > 1 {
        return Err(Error::param(
            "tensors",
            format!("{name:?} has shape {:?}, expected [{len}]", t.dims()),
        ));
    }
    let v: Vec<f64> = t
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    Ok(DVector::from_vec(v))
}

pub(crate) fn tensor_matrix(
    map: &HashMap<String, Tensor>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<DMatrix<f64>> {
    let t = get(map, name)?;
    if t.dims() != [rows, cols] {
        return Err(Error::param(
            "tensors",
            format!(
                "{name:?} has shape {:?}, expected [{rows}, {cols}]",
                t.dims()
            ),
        ));
    }
    let v: Vec<f64> = t
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    Ok(DMatrix::from_row_slice(rows, cols, &v))
}

/// How the JSON settings file records a model's scaler; its numbers live in the
/// safetensors file, because JSON's decimal round trip is not guaranteed bit-exact.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ScalerMeta {
    kind: String,
    n_features: usize,
    tensors: [String; 2],
}

const SCALER_MEAN: &str = "scaler.mean";
const SCALER_SCALE: &str = "scaler.scale";

/// Adds the scaler's tensors to `tensors` and returns its JSON description.
pub(crate) fn put_scaler(
    scaler: Option<&StandardScaler>,
    tensors: &mut HashMap<String, Tensor>,
) -> Result<Option<ScalerMeta>> {
    let Some(s) = scaler else { return Ok(None) };
    let dev = Device::Cpu;
    let mean = DVector::from_column_slice(s.mean());
    let scale = DVector::from_column_slice(s.scale());
    tensors.insert(SCALER_MEAN.into(), vector_tensor(&mean, &dev, DType::F64)?);
    tensors.insert(
        SCALER_SCALE.into(),
        vector_tensor(&scale, &dev, DType::F64)?,
    );
    Ok(Some(ScalerMeta {
        kind: "standard".into(),
        n_features: s.n_features(),
        tensors: [SCALER_MEAN.into(), SCALER_SCALE.into()],
    }))
}

/// Reads back the scaler described by `meta` from `tensors`.
pub(crate) fn take_scaler(
    meta: Option<&ScalerMeta>,
    tensors: &HashMap<String, Tensor>,
) -> Result<Option<StandardScaler>> {
    let Some(m) = meta else { return Ok(None) };
    if m.kind != "standard" {
        return Err(Error::param(
            "scaler",
            format!("unknown scaler kind {:?}", m.kind),
        ));
    }
    let mean = tensor_vector(tensors, SCALER_MEAN, m.n_features)?;
    let scale = tensor_vector(tensors, SCALER_SCALE, m.n_features)?;
    Ok(Some(StandardScaler::from_parts(
        mean.as_slice().to_vec(),
        scale.as_slice().to_vec(),
    )?))
}

/// Rejects non-finite parameters, which would otherwise surface only as NaN predictions.
pub(crate) fn finite_params(values: &[f64], what: &str) -> Result<()> {
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::param(
            "tensors",
            format!("{what} holds NaN or infinity"),
        ));
    }
    Ok(())
}
