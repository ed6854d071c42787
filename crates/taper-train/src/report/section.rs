//! What a domain adds to its run's report: sections saved as
//! `RUN/report/<name>.json`, with their images beside them in `RUN/report/`.
//!
//! The generic report knows no domain: a classifier, a GAN or a translator
//! describes what it wants shown (figures, tables, pictures, curves, scatter
//! plots, matrices) in these blocks, and the page draws them. The file format is
//! the serde form of [`Section`]:
//!
//! ```json
//! {"title": "Confusion", "order": 10, "blocks": [
//!   {"kind": "matrix", "title": "valid", "rows": ["0", "1"], "columns": ["0", "1"],
//!    "values": [[5, 1], [0, 6]], "x_label": "predicted", "y_label": "true"},
//!   {"kind": "images", "images": [{"file": "report/wrong-0.png", "caption": "3 -> 8"}]}]}
//! ```

use crate::fs::atomic_write;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The folder of a run directory that holds the sections and their images.
pub const SECTION_DIR: &str = "report";

/// One part of a report page, shown under its title after the training curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Heading of the section.
    pub title: String,
    /// Position among the sections: lower first, ties by file name.
    #[serde(default)]
    pub order: i32,
    /// What the section shows, in order.
    pub blocks: Vec<Block>,
}

/// A picture of a section: a PNG, JPEG, GIF or SVG file, by its path relative
/// to the run directory, and its caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Picture {
    /// Path relative to the run directory (`report/wrong-0.png`, `samples/epoch-00001.png`).
    pub file: String,
    /// Text under the picture.
    #[serde(default)]
    pub caption: String,
}

/// One named curve: `(x, y)` points in drawing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The points; non-finite values are left out when drawn.
    pub points: Vec<(f64, f64)>,
}

/// A building block of a [`Section`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Block {
    /// A paragraph of plain text.
    Text {
        /// The text (escaped when drawn).
        text: String,
    },
    /// Named figures, shown as a two-column table; each value cell carries
    /// `data-figure="<name>"` and holds the value's JSON text exactly, so a
    /// reader (or a test) can compare it with the JSON it came from.
    Figures {
        /// `(name, value)` in display order.
        figures: Vec<(String, serde_json::Value)>,
    },
    /// A table of text cells.
    Table {
        /// Column headings.
        header: Vec<String>,
        /// Rows, each as long as `header`.
        rows: Vec<Vec<String>>,
    },
    /// Pictures: thumbnails side by side, or with `slider` one at a time
    /// under a range input (frames over epochs).
    Images {
        /// The pictures, in order.
        images: Vec<Picture>,
        /// One picture at a time, chosen with a slider (the last shown first).
        #[serde(default)]
        slider: bool,
    },
    /// Line chart of several series over a common x axis.
    Lines {
        /// Chart title.
        title: String,
        /// Axis labels.
        x_label: String,
        /// Axis labels.
        y_label: String,
        /// The curves.
        series: Vec<Series>,
    },
    /// Scatter plot of points, with the `y = x` diagonal when `diagonal`
    /// (predicted against true values).
    Scatter {
        /// Chart title.
        title: String,
        /// Axis labels.
        x_label: String,
        /// Axis labels.
        y_label: String,
        /// The points.
        points: Vec<(f64, f64)>,
        /// Draw the `y = x` line.
        #[serde(default)]
        diagonal: bool,
    },
    /// A matrix drawn as shaded cells with their values (a confusion matrix:
    /// rows the true classes, columns the predicted ones).
    Matrix {
        /// Chart title.
        title: String,
        /// Row names, top to bottom.
        rows: Vec<String>,
        /// Column names, left to right.
        columns: Vec<String>,
        /// `values[row][column]`.
        values: Vec<Vec<f64>>,
        /// Axis labels.
        x_label: String,
        /// Axis labels.
        y_label: String,
    },
}

impl Section {
    /// An empty section titled `title` at position `order`.
    pub fn new(title: impl Into<String>, order: i32) -> Self {
        Self {
            title: title.into(),
            order,
            blocks: Vec::new(),
        }
    }

    /// Appends a block.
    pub fn with(mut self, block: Block) -> Self {
        self.blocks.push(block);
        self
    }

    /// Writes the section as `RUN/report/<name>.json` (atomically, creating the
    /// folder); a section of the same name is replaced. Returns the path.
    ///
    /// # Errors
    /// A name that is not a plain file stem (`[A-Za-z0-9_-]+`), or a file that
    /// cannot be written.
    pub fn save(&self, run_dir: &Path, name: &str) -> Result<PathBuf> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::Config(format!(
                "report section name '{name}': use letters, digits, '-' and '_'"
            )));
        }
        if !crate::distributed::is_primary() {
            // Rank 0 writes the run's files; the others' sections are the same.
            return Ok(run_dir.join(SECTION_DIR).join(format!("{name}.json")));
        }
        let dir = section_dir(run_dir)?;
        let path = dir.join(format!("{name}.json"));
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Data(format!("report section '{name}': {e}")))?;
        atomic_write(&path, &json)?;
        Ok(path)
    }

    /// Every section saved in `run_dir`, in page order (by [`Section::order`],
    /// then file name). A file that does not parse is an error naming it.
    ///
    /// # Errors
    /// An unreadable folder or section file.
    pub fn load_all(run_dir: &Path) -> Result<Vec<Section>> {
        let dir = run_dir.join(SECTION_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| Error::io(&f, e))?;
            let s: Section = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Data(format!("{}: not a report section: {e}", f.display())))?;
            out.push(s);
        }
        // A stable sort keeps the file-name order among equal positions.
        out.sort_by_key(|s| s.order);
        Ok(out)
    }
}

/// `RUN/report/`, created: where a domain writes the images its sections show.
///
/// # Errors
/// A folder that cannot be created.
pub fn section_dir(run_dir: &Path) -> Result<PathBuf> {
    let dir = run_dir.join(SECTION_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}
