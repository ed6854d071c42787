//! Saving and loading fitted models, and the tensor conversions both model kinds share.
//!
//! A model is two files: its parameters (and scaler) in safetensors, its settings
//! beside them in JSON with the same stem. Each is written with
//! [`taper_train::checkpoint::atomic_write`], so a crash leaves the old file or the
//! new one, never a torn mix.

use crate::error::{Error, Result};
use crate::fitted::Fitted;
use crate::preprocessing::StandardScaler;
use candle_core::{DType, Device, Tensor};
use nalgebra::{DMatrix, DVector};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use taper_train::checkpoint::{atomic_write, read_tensors};

/// The JSON file that accompanies a safetensors file: same stem, `.json` extension.
pub fn settings_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// What a model kind adds to the shared save/load code.
pub(crate) trait Persist: Sized {
    /// The `format` tag of its settings file.
    const FORMAT: &'static str;
    /// Its own settings-file fields, beside the shared ones.
    type Extra: Serialize + DeserializeOwned;
    /// The shared state, the parameters as host f64 tensors, and the model's own fields.
    fn parts(&self) -> Result<(&Fitted, HashMap<String, Tensor>, Self::Extra)>;
    /// Rebuilds the model from what [`save`] wrote.
    fn restore(
        extra: Self::Extra,
        fitted: Fitted,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self>;
}

/// The settings file: the fields every model has, then the model's own.
#[derive(Serialize, Deserialize)]
struct Saved<E> {
    format: String,
    version: u32,
    feature_names: Vec<String>,
    scaler: Option<ScalerMeta>,
    n_iter: usize,
    converged: bool,
    #[serde(flatten)]
    extra: E,
}

/// Writes `model` to `path` (safetensors) and its settings beside it (JSON).
pub(crate) fn save<M: Persist>(model: &M, path: &Path) -> Result<()> {
    let (f, mut tensors, extra) = model.parts()?;
    let saved = Saved {
        format: M::FORMAT.into(),
        version: 1,
        feature_names: f.feature_names.clone(),
        scaler: put_scaler(f.scaler.as_ref(), &mut tensors)?,
        n_iter: f.n_iter,
        converged: f.converged,
        extra,
    };
    // Tensors from `parts` are host-resident and contiguous, which safetensors' views need.
    let bytes = safetensors::serialize(&tensors, None).map_err(|e| Error::ModelFile {
        path: path.to_path_buf(),
        message: format!("writing safetensors: {e}"),
    })?;
    atomic_write(path, &bytes)?;
    let json_path = settings_path(path);
    let text = serde_json::to_vec_pretty(&saved).map_err(|error| Error::Json {
        path: json_path.clone(),
        error,
    })?;
    Ok(atomic_write(&json_path, &text)?)
}

/// Reads a model written by [`save`].
pub(crate) fn load<M: Persist>(path: &Path) -> Result<M> {
    let saved: Saved<M::Extra> = load_meta(&settings_path(path), M::FORMAT)?;
    let tensors = read_tensors(path, &Device::Cpu)?;
    // Past this point anything inconsistent is the file's fault, so name the file.
    let bad = |e: Error| Error::ModelFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let scaler = take_scaler(saved.scaler.as_ref(), &tensors).map_err(bad)?;
    let mut fitted = Fitted::new(saved.feature_names, scaler).map_err(bad)?;
    fitted.n_iter = saved.n_iter;
    fitted.converged = saved.converged;
    M::restore(saved.extra, fitted, &tensors).map_err(bad)
}

/// Reads a settings file, checking its `format` tag and `version` before the fields,
/// so loading the wrong kind of model says so instead of reporting a missing field.
fn load_meta<T: DeserializeOwned>(path: &Path, format: &str) -> Result<T> {
    let json = |error| Error::Json {
        path: path.to_path_buf(),
        error,
    };
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(json)?;
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
    serde_json::from_value(value).map_err(json)
}

/// The `coef` and `intercept` tensors every model exposes.
pub(crate) fn param_map(
    coef: Tensor,
    intercept: &DVector<f64>,
    device: &Device,
    dtype: DType,
) -> Result<HashMap<String, Tensor>> {
    let intercept = vector_tensor(intercept, device, dtype)?;
    Ok(HashMap::from([
        ("coef".to_string(), coef),
        ("intercept".to_string(), intercept),
    ]))
}

/// Rejects non-finite parameters, which would otherwise surface only as NaN predictions.
pub(crate) fn finite_params(coef: &[f64], intercept: &[f64]) -> Result<()> {
    for (what, values) in [("coef", coef), ("intercept", intercept)] {
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::param(
                "tensors",
                format!("{what} holds NaN or infinity"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn vector_tensor(v: &DVector<f64>, device: &Device, dtype: DType) -> Result<Tensor> {
    Ok(Tensor::from_slice(v.as_slice(), v.len(), device)?.to_dtype(dtype)?)
}

pub(crate) fn matrix_tensor(m: &DMatrix<f64>, device: &Device, dtype: DType) -> Result<Tensor> {
    // nalgebra is column-major and candle row-major, so go through the transpose's storage.
    let row_major: Vec<f64> = m.transpose().as_slice().to_vec();
    Ok(Tensor::from_vec(row_major, (m.nrows(), m.ncols()), device)?.to_dtype(dtype)?)
}

/// The tensor called `name`, read back as host f64 values once its shape is checked.
fn host_values(
    map: &HashMap<String, Tensor>,
    name: &str,
    shape_ok: impl Fn(&Tensor) -> bool,
    expected: &str,
) -> Result<Vec<f64>> {
    let t = map
        .get(name)
        .ok_or_else(|| Error::param("tensors", format!("no tensor named {name:?}")))?;
    if !shape_ok(t) {
        return Err(Error::param(
            "tensors",
            format!("{name:?} has shape {:?}, expected {expected}", t.dims()),
        ));
    }
    Ok(t.to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1()?)
}

pub(crate) fn tensor_vector(
    map: &HashMap<String, Tensor>,
    name: &str,
    len: usize,
) -> Result<DVector<f64>> {
    let ok = |t: &Tensor| t.elem_count() == len && t.rank() <= 1;
    let v = host_values(map, name, ok, &format!("[{len}]"))?;
    Ok(DVector::from_vec(v))
}

pub(crate) fn tensor_matrix(
    map: &HashMap<String, Tensor>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<DMatrix<f64>> {
    let ok = |t: &Tensor| t.dims() == [rows, cols];
    let v = host_values(map, name, ok, &format!("[{rows}, {cols}]"))?;
    Ok(DMatrix::from_row_slice(rows, cols, &v))
}

/// How the JSON settings file records a model's scaler; its numbers live in the
/// safetensors file, because JSON's decimal round trip is not guaranteed bit-exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ScalerMeta {
    kind: String,
    n_features: usize,
    tensors: [String; 2],
}

const SCALER_MEAN: &str = "scaler.mean";
const SCALER_SCALE: &str = "scaler.scale";

/// Adds the scaler's tensors to `tensors` and returns its JSON description.
fn put_scaler(
    scaler: Option<&StandardScaler>,
    tensors: &mut HashMap<String, Tensor>,
) -> Result<Option<ScalerMeta>> {
    let Some(s) = scaler else { return Ok(None) };
    for (name, values) in [(SCALER_MEAN, s.mean()), (SCALER_SCALE, s.scale())] {
        tensors.insert(
            name.into(),
            Tensor::from_slice(values, values.len(), &Device::Cpu)?,
        );
    }
    Ok(Some(ScalerMeta {
        kind: "standard".into(),
        n_features: s.n_features(),
        tensors: [SCALER_MEAN.into(), SCALER_SCALE.into()],
    }))
}

/// Reads back the scaler described by `meta` from `tensors`.
fn take_scaler(
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
