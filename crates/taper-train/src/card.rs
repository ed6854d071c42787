//! What rebuilds a trained model from its run directory: `model.json`.
//!
//! A model that describes itself ([`crate::TrainStep::model_card`]) has its card
//! written into the run directory when training starts, beside the checkpoints:
//! its family (`vision.classifier`, `nlp.seq2seq`, ...), its configuration and
//! what is needed to feed it (normalisation, class names, vocabularies). Each
//! domain crate reads it back in one call (`taper_vision::ImageClassifier::load`,
//! `taper_nlp::seq2seq::Translator::load`): a card of another family, a newer
//! format or a missing file is a typed error naming the file.
//!
//! ```
//! use taper_train::card::ModelCard;
//!
//! let dir = tempfile::tempdir()?;
//! let card = ModelCard::new("demo.linear", "taper-train", env!("CARGO_PKG_VERSION"), &[4, 2], &"none")?;
//! card.save(dir.path())?;
//! let back = ModelCard::load(dir.path(), "demo.linear")?;
//! assert_eq!(back.config::<Vec<usize>>()?, [4, 2]);
//! let e = ModelCard::load(dir.path(), "vision.classifier").unwrap_err();
//! assert!(matches!(e, taper_train::Error::WrongModel { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::fs::atomic_write;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The card's file name in a run directory.
pub const MODEL_FILE: &str = "model.json";

/// The newest card format this build reads and writes.
pub const FORMAT: u32 = 1;

/// A saved model's description (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Format version of the card ([`FORMAT`] when written).
    pub format: u32,
    /// The model family, `domain.kind` (`vision.classifier`).
    pub family: String,
    /// The crate that wrote it, and its version.
    pub crate_name: String,
    /// Version of that crate.
    pub crate_version: String,
    /// The family's configuration (its serde form).
    pub config: serde_json::Value,
    /// What feeding the model needs (normalisation, class names, file names of
    /// vocabularies), in the family's serde form.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl ModelCard {
    /// A card of `family` written by `crate_name` `crate_version`.
    ///
    /// # Errors
    /// A configuration that does not serialise.
    pub fn new(
        family: &str,
        crate_name: &str,
        crate_version: &str,
        config: &impl Serialize,
        data: &impl Serialize,
    ) -> Result<Self> {
        let ser = |v: serde_json::Result<serde_json::Value>| {
            v.map_err(|e| Error::Data(format!("model card of '{family}': {e}")))
        };
        Ok(Self {
            format: FORMAT,
            family: family.to_string(),
            crate_name: crate_name.to_string(),
            crate_version: crate_version.to_string(),
            config: ser(serde_json::to_value(config))?,
            data: ser(serde_json::to_value(data))?,
        })
    }

    /// The card's path in `run_dir`.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(MODEL_FILE)
    }

    /// Writes `RUN/model.json` atomically (creating the run directory).
    ///
    /// # Errors
    /// The file or folder cannot be written.
    pub fn save(&self, run_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| Error::Data(format!("model card: {e}")))?;
        atomic_write(&Self::path(run_dir), &json)
    }

    /// Reads `RUN/model.json`, requiring `family`.
    ///
    /// # Errors
    /// A missing run directory or card, unreadable JSON (each naming the file),
    /// [`Error::WrongModel`] for another family, [`Error::NewerFormat`] for a card
    /// this build cannot read.
    pub fn load(run_dir: &Path, family: &str) -> Result<Self> {
        if !run_dir.is_dir() {
            return Err(Error::checkpoint(run_dir, "no such run directory"));
        }
        let path = Self::path(run_dir);
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::checkpoint(
                &path,
                format!("cannot read the saved model's description ({e}): is this the run directory of a trained model?"),
            )
        })?;
        let card: ModelCard = serde_json::from_slice(&bytes)
            .map_err(|e| Error::checkpoint(&path, format!("not a model card: {e}")))?;
        if card.format > FORMAT {
            return Err(Error::NewerFormat {
                path,
                found: card.format,
                supported: FORMAT,
            });
        }
        if card.family != family {
            return Err(Error::WrongModel {
                path,
                found: card.family,
                expected: family.to_string(),
            });
        }
        Ok(card)
    }

    /// The configuration as `T`.
    ///
    /// # Errors
    /// A configuration that does not parse as `T` (a hand-edited card).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone()).map_err(|e| {
            Error::Data(format!(
                "model card of '{}': bad configuration: {e}",
                self.family
            ))
        })
    }

    /// The feeding data as `T`.
    ///
    /// # Errors
    /// Data that does not parse as `T`.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.data.clone())
            .map_err(|e| Error::Data(format!("model card of '{}': bad data: {e}", self.family)))
    }
}
