//! An image-folder data set: one sub-folder per class, images decoded with
//! `image` and passed through a seeded [`Compose`] pipeline on load.

use crate::transforms::{open_image, to_tensor_batch, Compose, Normalize};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use taper_nn::init::mix;
use taper_train::data::Dataset;

const EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "gif", "bmp"];

/// How [`ImageFolder::open`] treats files it cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadFile {
    /// Fail, naming the file.
    Fail,
    /// Leave it out and list it in [`ImageFolder::skipped`].
    Skip,
}

/// Images in `root/<class>/<file>`, classes in sorted order.
pub struct ImageFolder {
    items: Vec<(PathBuf, u32)>,
    classes: Vec<String>,
    skipped: Vec<(PathBuf, String)>,
    pipeline: Arc<Compose>,
    normalize: Option<Normalize>,
    channels: usize,
    seed: u64,
}

impl ImageFolder {
    /// Lists `root`; each file's header is read so that unreadable files are
    /// found now (failing, or skipped and reported) rather than mid-epoch.
    pub fn open(root: &Path, channels: usize, on_bad: OnBadFile) -> Result<Self> {
        let rd = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
        // Hidden entries (`.ipynb_checkpoints`, `.git`, `.DS_Store`) are not
        // classes: counted as one, they shifted every real class's label by one.
        let mut classes: Vec<(String, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter(|e| !is_hidden(&e.path()) && e.path().is_dir())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(Error::Data(format!(
                "{}: no class folders (expected one sub-folder per class)",
                root.display()
            )));
        }
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        for (label, (_, dir)) in classes.iter().enumerate() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| !is_hidden(p))
                .filter(|p| {
                    p.extension()
                        .map(|x| EXTENSIONS.contains(&x.to_string_lossy().to_lowercase().as_str()))
                        .unwrap_or(false)
                })
                .collect();
            files.sort();
            for f in files {
                match header_check(&f) {
                    Ok(()) => items.push((f, label as u32)),
                    Err(e) if on_bad == OnBadFile::Skip => skipped.push((f, e.to_string())),
                    Err(e) => return Err(e),
                }
            }
        }
        if items.is_empty() {
            return Err(Error::Data(format!(
                "{}: no readable images in any class folder",
                root.display()
            )));
        }
        Ok(Self {
            items,
            classes: classes.into_iter().map(|c| c.0).collect(),
            skipped,
            pipeline: Arc::new(Compose::new()),
            normalize: None,
            channels,
            seed: 0,
        })
    }

    /// Applies `pipeline` to every image on load, seeded by `(seed, epoch, index)`.
    pub fn with_transform(mut self, pipeline: Compose, seed: u64) -> Self {
        self.pipeline = Arc::new(pipeline);
        self.seed = seed;
        self
    }

    /// Normalises each image tensor.
    pub fn with_normalize(mut self, n: Normalize) -> Self {
        self.normalize = Some(n);
        self
    }

    /// Class names, index = label.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Files left out by [`OnBadFile::Skip`], with the reason.
    pub fn skipped(&self) -> &[(PathBuf, String)] {
        &self.skipped
    }

    /// The (file, label) list.
    pub fn items(&self) -> &[(PathBuf, u32)] {
        &self.items
    }
}

/// True for names starting with a dot (hidden on Unix, and what notebooks,
/// version control and macOS leave in folders).
fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// The checks [`open_image`] makes before decoding, from the header alone:
/// so that a file it would refuse is found when the folder is opened.
fn header_check(path: &Path) -> Result<()> {
    crate::transforms::check_image_header(path).map(|_| ())
}

impl Dataset for ImageFolder {
    type Item = Vec<Tensor>;
    fn len(&self) -> usize {
        self.items.len()
    }
    fn get(&self, index: usize) -> Result<Vec<Tensor>> {
        self.get_in_epoch(index, 0)
    }
    fn get_in_epoch(&self, index: usize, epoch: usize) -> Result<Vec<Tensor>> {
        let (path, label) = self.items.get(index).ok_or_else(|| {
            Error::Data(format!(
                "index {index} out of range for {} images",
                self.items.len()
            ))
        })?;
        let img = open_image(path)?;
        let img = self
            .pipeline
            .apply(
                img,
                mix(&[self.seed, epoch as u64, index as u64], "image-folder"),
            )
            .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
        let t = to_tensor_batch(
            std::slice::from_ref(&img),
            self.channels,
            self.normalize.as_ref(),
            &Device::Cpu,
        )?
        .squeeze(0)?;
        Ok(vec![t, Tensor::new(*label, &Device::Cpu)?])
    }
}

impl std::fmt::Debug for ImageFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageFolder")
            .field("images", &self.items.len())
            .field("classes", &self.classes)
            .field("skipped", &self.skipped.len())
            .field("transforms", &self.pipeline.len())
            .finish()
    }
}
