//! Checkpoints: weights, optimizer state and trainer state in one run directory,
//! written so that a kill at any instant leaves the previous checkpoint whole.
//!
//! Layout of `<run>/checkpoints/`:
//! - `<tag>/model.safetensors`: every variable under its `VarBuilder` path
//!   (`fc1.weight`, `gen.conv1.bias`, ...), which is also PyTorch's naming, so
//!   `safetensors.torch.load_file` reads it into a `state_dict`;
//! - `<tag>/optim-<group>.safetensors`: optimizer buffers named `<param>.<buffer>`;
//! - `<tag>/state.json`: epoch, step, seed, schedules, metrics history, config;
//! - `latest.json` / `best.json`: which `<tag>` is the latest / best.
//!
//! A checkpoint directory is complete (files and directory fsynced) before the
//! pointer file is replaced by an atomic rename, so readers only ever see
//! complete checkpoints.

pub use crate::fs::atomic_write;

use crate::fs::{sync_dir, sync_file};
use crate::optim::OptimState;
use crate::record::EpochRecord;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

/// The variables of `varmap` by name.
pub fn varmap_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    crate::optim::named_vars(varmap, "")
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect()
}

/// Saves the variables of `varmap` to a safetensors file, atomically.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let bytes = safetensors_bytes(&varmap_tensors(varmap))?;
    atomic_write(path, &bytes)
}

fn safetensors_bytes(tensors: &HashMap<String, Tensor>) -> Result<Vec<u8>> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let host: Vec<(String, Tensor)> = sorted
        .into_iter()
        .map(|(k, t)| Ok((k.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let views: Vec<(String, &Tensor)> = host.iter().map(|(k, t)| (k.clone(), t)).collect();
    safetensors::serialize(views, None)
        .map_err(|e| Error::Data(format!("cannot serialise tensors: {e}")))
}

/// Reads a safetensors file onto `device`, with errors naming the file.
pub fn read_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::checkpoint(path, "file not found"));
    }
    candle_core::safetensors::load(path, device).map_err(|e| {
        Error::checkpoint(
            path,
            format!("unreadable (truncated or not safetensors): {e}"),
        )
    })
}

/// Loads the tensors of `path` whose names satisfy `keep` into `varmap` (one
/// network of a checkpoint holding several, such as a GAN's generator), as
/// strictly as [`load_weights`] within that selection.
///
/// # Errors
/// As [`load_weights`], restricted to the kept names.
pub fn load_weights_where(varmap: &VarMap, path: &Path, keep: impl Fn(&str) -> bool) -> Result<()> {
    load_selected(varmap, path, &keep)
}

/// Loads `path` into `varmap`, refusing a file whose names or shapes differ from
/// the model's (a checkpoint of another model), before changing anything.
pub fn load_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    load_selected(varmap, path, &|_| true)
}

fn load_selected(varmap: &VarMap, path: &Path, keep: &dyn Fn(&str) -> bool) -> Result<()> {
    let vars = crate::optim::named_vars(varmap, "");
    let device = vars
        .first()
        .map(|(_, v)| v.device().clone())
        .unwrap_or(Device::Cpu);
    let mut tensors = read_tensors(path, &device)?;
    tensors.retain(|k, _| keep(k));
    let mut problems = Vec::new();
    for (name, var) in &vars {
        match tensors.get(name) {
            None => problems.push(format!("missing tensor '{name}'")),
            Some(t) if t.dims() != var.dims() => problems.push(format!(
                "tensor '{name}' has shape {:?}, the model expects {:?}",
                t.dims(),
                var.dims()
            )),
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !vars.iter().any(|(n, _)| n == *k))
        .collect();
    extra.sort();
    for k in extra {
        problems.push(format!("unexpected tensor '{k}'"));
    }
    if !problems.is_empty() {
        let shown: Vec<String> = problems.iter().take(5).cloned().collect();
        let more = problems.len().saturating_sub(5);
        return Err(Error::checkpoint(
            path,
            format!(
                "does not match this model: {}{}",
                shown.join("; "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            ),
        ));
    }
    for (name, var) in &vars {
        var.set(&tensors[name].to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// Saved state of one optimizer group.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GroupState {
    /// Optimizer scalars (step, lr, group steps).
    pub scalars: BTreeMap<String, f64>,
    /// Schedule state.
    pub schedule: serde_json::Value,
}

/// Everything but tensors: where the run stands.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainerState {
    /// Format version of this file.
    pub version: u32,
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of `epoch` already trained on.
    pub batch_in_epoch: usize,
    /// Batches trained on since the start of the run.
    pub iteration: u64,
    /// The run's seed.
    pub seed: u64,
    /// Best value of the monitored metric so far.
    pub best_metric: Option<f64>,
    /// Epochs since the monitored metric last improved.
    pub epochs_without_improvement: usize,
    /// Training metrics of the epoch in progress (for exact epoch means on resume).
    pub epoch_train: crate::metrics::Metrics,
    /// Per-epoch records so far.
    pub history: Vec<EpochRecord>,
    /// State of each optimizer group.
    pub groups: BTreeMap<String, GroupState>,
    /// The user's configuration, for the record.
    pub config: serde_json::Value,
    /// State of the optimizers' strategies (loss scaler, privacy accountant).
    #[serde(default)]
    pub strategies: serde_json::Value,
    /// How the training data was cut into batches: a checkpoint written
    /// mid-epoch resumes only with the same order (checkpoints of older versions
    /// have none).
    #[serde(default)]
    pub data: Option<DataOrder>,
}

/// What fixes which items a training epoch's batches hold: resuming mid-epoch
/// skips the batches already trained on, which is only right when all of this
/// is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataOrder {
    /// Items in the training set.
    pub items: usize,
    /// Items per batch.
    pub batch_size: usize,
    /// Whether each epoch is shuffled.
    pub shuffle: bool,
    /// Whether a last, smaller batch is dropped.
    pub drop_last: bool,
    /// The shuffle's seed.
    pub seed: u64,
    /// Data-parallel ranks sharing each epoch (1: one process; checkpoints of
    /// older versions have none).
    #[serde(default = "one")]
    pub world_size: usize,
}

fn one() -> usize {
    1
}

impl DataOrder {
    /// The differences from `other`, as `name saved → now` phrases.
    pub fn differences(&self, now: &DataOrder) -> Vec<String> {
        let mut d = Vec::new();
        let mut cmp = |name: &str, a: String, b: String| {
            if a != b {
                d.push(format!("{name} {a} → {b}"));
            }
        };
        cmp(
            "training items",
            self.items.to_string(),
            now.items.to_string(),
        );
        cmp(
            "batch size",
            self.batch_size.to_string(),
            now.batch_size.to_string(),
        );
        cmp("shuffle", self.shuffle.to_string(), now.shuffle.to_string());
        cmp(
            "drop_last",
            self.drop_last.to_string(),
            now.drop_last.to_string(),
        );
        cmp("loader seed", self.seed.to_string(), now.seed.to_string());
        cmp(
            "data-parallel ranks",
            self.world_size.to_string(),
            now.world_size.to_string(),
        );
        d
    }
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// The trainer state.
    pub state: TrainerState,
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    dir: String,
}

/// The checkpoint folder of a run directory.
pub fn checkpoints_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// Writes a checkpoint named `tag` and points `latest` (and `best` when `best`)
/// at it; removes checkpoints no pointer names any more.
pub fn save(
    run_dir: &Path,
    tag: &str,
    varmap: &VarMap,
    optim: &[(String, OptimState, serde_json::Value)],
    state: &TrainerState,
    best: bool,
) -> Result<PathBuf> {
    let root = checkpoints_dir(run_dir);
    let dir = root.join(tag);
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        sync_file(&p)
    };
    write(
        "model.safetensors",
        &safetensors_bytes(&varmap_tensors(varmap))?,
    )?;
    let mut state = state.clone();
    for (name, os, sched) in optim {
        write(
            &format!("optim-{name}.safetensors"),
            &safetensors_bytes(&os.tensors)?,
        )?;
        state.groups.insert(
            name.clone(),
            GroupState {
                scalars: os.scalars.clone(),
                schedule: sched.clone(),
            },
        );
    }
    let json = serde_json::to_vec_pretty(&state)
        .map_err(|e| Error::Data(format!("cannot serialise trainer state: {e}")))?;
    write("state.json", &json)?;
    sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    let pointer = serde_json::to_vec(&Pointer {
        dir: tag.to_string(),
    })
    .map_err(|e| Error::Data(e.to_string()))?;
    atomic_write(&root.join("latest.json"), &pointer)?;
    if best {
        atomic_write(&root.join("best.json"), &pointer)?;
    }
    prune(&root);
    Ok(dir)
}

fn pointer_target(root: &Path, which: &str) -> Result<Option<String>> {
    let p = root.join(format!("{which}.json"));
    if !p.exists() {
        return Ok(None);
    }
    let bytes = fs::read(&p).map_err(|e| Error::io(&p, e))?;
    let ptr: Pointer = serde_json::from_slice(&bytes)
        .map_err(|e| Error::checkpoint(&p, format!("unreadable pointer: {e}")))?;
    if ptr.dir.contains('/') || ptr.dir.contains("..") {
        return Err(Error::checkpoint(
            &p,
            "pointer names a folder outside the run",
        ));
    }
    Ok(Some(ptr.dir))
}

fn prune(root: &Path) {
    let keep: Vec<String> = ["latest", "best"]
        .iter()
        .filter_map(|w| pointer_target(root, w).ok().flatten())
        .collect();
    if let Ok(entries) = fs::read_dir(root) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && !keep.contains(&name) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Reads the `latest` (or `best`) checkpoint of a run; `Ok(None)` when the run
/// has none yet.
///
/// # Errors
/// A run directory that does not exist (a mistyped path is not an empty run),
/// or a pointer or state that cannot be read.
pub fn read(run_dir: &Path, which: &str) -> Result<Option<Checkpoint>> {
    if !run_dir.is_dir() {
        return Err(Error::checkpoint(run_dir, "no such run directory"));
    }
    let root = checkpoints_dir(run_dir);
    let Some(tag) = pointer_target(&root, which)? else {
        return Ok(None);
    };
    let dir = root.join(&tag);
    let sp = dir.join("state.json");
    let bytes = fs::read(&sp).map_err(|e| Error::checkpoint(&sp, format!("cannot read: {e}")))?;
    let state: TrainerState = serde_json::from_slice(&bytes)
        .map_err(|e| Error::checkpoint(&sp, format!("corrupt state: {e}")))?;
    Ok(Some(Checkpoint { dir, state }))
}

/// The checkpoint a finished run keeps: the best by the monitored metric, else
/// the latest.
///
/// # Errors
/// A missing run directory, or a run with no checkpoint at all.
pub fn kept(run_dir: &Path) -> Result<Checkpoint> {
    match read(run_dir, "best")? {
        Some(c) => Ok(c),
        None => read(run_dir, "latest")?.ok_or_else(|| {
            Error::checkpoint(checkpoints_dir(run_dir), "this run has no checkpoint yet")
        }),
    }
}

impl Checkpoint {
    /// Path of the weights file.
    pub fn weights_path(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// Loads the weights into `varmap` (names and shapes must match).
    pub fn load_weights(&self, varmap: &VarMap) -> Result<()> {
        load_weights(varmap, &self.weights_path())
    }

    /// The saved state of optimizer group `name`.
    pub fn optim_state(
        &self,
        name: &str,
        device: &Device,
    ) -> Result<(OptimState, serde_json::Value)> {
        let gs = self.state.groups.get(name).ok_or_else(|| {
            Error::checkpoint(&self.dir, format!("no state for optimizer group '{name}'"))
        })?;
        let tensors = read_tensors(&self.dir.join(format!("optim-{name}.safetensors")), device)?;
        Ok((
            OptimState {
                tensors,
                scalars: gs.scalars.clone(),
            },
            gs.schedule.clone(),
        ))
    }
}
