//! Tabular data: the [`Dataset`] type, a CSV loader with precise error
//! reporting, and loaders for the small data sets embedded in `assets/`.

use crate::error::{Error, Result};
use nalgebra::{DMatrix, DVector};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A feature matrix with its target, plus the names needed to read results.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Features, one row per sample.
    pub x: DMatrix<f64>,
    /// Target: a real value (regression) or a class index stored as a float.
    pub y: DVector<f64>,
    /// One name per column of `x`.
    pub feature_names: Vec<String>,
    /// Name of the target.
    pub target_name: String,
    /// Class names indexed by label; empty for regression targets.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Builds a dataset, checking shapes and finiteness; names default to `x0, x1, ...`.
    pub fn new(x: DMatrix<f64>, y: DVector<f64>) -> Result<Self> {
        if x.nrows() != y.len() {
            return Err(Error::LengthMismatch {
                what: "rows of x and length of y",
                left: x.nrows(),
                right: y.len(),
            });
        }
        crate::check::finite_matrix(&x, "x")?;
        crate::check::finite_vector(&y, "y")?;
        let feature_names = default_names(x.ncols());
        Ok(Dataset {
            x,
            y,
            feature_names,
            target_name: "y".into(),
            class_names: Vec::new(),
        })
    }

    /// Replaces the feature names (one per column).
    pub fn with_feature_names(mut self, names: Vec<String>) -> Result<Self> {
        if names.len() != self.x.ncols() {
            return Err(Error::LengthMismatch {
                what: "feature names and columns of x",
                left: names.len(),
                right: self.x.ncols(),
            });
        }
        self.feature_names = names;
        Ok(self)
    }

    /// Number of samples (rows).
    pub fn n_samples(&self) -> usize {
        self.x.nrows()
    }

    /// Number of features (columns).
    pub fn n_features(&self) -> usize {
        self.x.ncols()
    }

    /// The target read as class labels; fails on negative or fractional values.
    pub fn labels(&self) -> Result<Vec<usize>> {
        labels_from_floats(self.y.as_slice())
    }

    /// The rows at `indices`, in that order (used for splits and folds).
    pub fn select(&self, indices: &[usize]) -> Result<Dataset> {
        let n = self.n_samples();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::param(
                "indices",
                format!("row index {bad} out of range for {n} samples"),
            ));
        }
        Ok(Dataset {
            x: self.x.select_rows(indices),
            y: self.y.select_rows(indices),
            feature_names: self.feature_names.clone(),
            target_name: self.target_name.clone(),
            class_names: self.class_names.clone(),
        })
    }
}

/// Converts float labels to class indices, rejecting values that are not small non-negative integers.
pub fn labels_from_floats(y: &[f64]) -> Result<Vec<usize>> {
    y.iter()
        .enumerate()
        .map(|(index, &v)| {
            // 2^32 is far beyond any sensible class count, and keeps the cast exact.
            if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 4_294_967_296.0 {
                Ok(v as usize)
            } else {
                Err(Error::InvalidLabel {
                    index,
                    message: format!("{v} is not a non-negative integer"),
                })
            }
        })
        .collect()
}

pub(crate) fn default_names(n: usize) -> Vec<String> {
    (0..n).map(|j| format!("x{j}")).collect()
}

/// Which column of a CSV file holds the target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TargetColumn {
    /// The column with this header name.
    Name(String),
    /// The column at this 0-based index.
    Index(usize),
    /// The last column.
    #[default]
    Last,
}

/// How to read a CSV file into a [`Dataset`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Where the target is.
    pub target: TargetColumn,
    /// Whether the first line holds column names.
    pub has_header: bool,
    /// Field separator.
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            target: TargetColumn::Last,
            has_header: true,
            delimiter: b',',
        }
    }
}

impl CsvOptions {
    /// Options selecting the target column by header name.
    pub fn target_name(name: impl Into<String>) -> Self {
        CsvOptions {
            target: TargetColumn::Name(name.into()),
            ..Default::default()
        }
    }

    /// Options selecting the target column by 0-based index.
    pub fn target_index(index: usize) -> Self {
        CsvOptions {
            target: TargetColumn::Index(index),
            ..Default::default()
        }
    }
}

/// Loads a numeric CSV file (gzip-compressed when the name ends in `.gz`) into a [`Dataset`].
pub fn load_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let reader = open_maybe_gz(path)?;
    read_csv(reader, path, options)
}

/// Reads CSV text from any reader; `source` names it in error messages.
pub fn read_csv<R: Read>(reader: R, source: &Path, options: &CsvOptions) -> Result<Dataset> {
    let table = read_table(reader, source, options.delimiter, options.has_header)?;
    let ncols = table.columns.len();
    let target = match &options.target {
        TargetColumn::Last => ncols - 1,
        TargetColumn::Index(i) if *i < ncols => *i,
        TargetColumn::Name(name) => {
            table
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| Error::MissingTargetColumn {
                    path: source.to_path_buf(),
                    column: format!("{name:?}"),
                    available: table.columns.clone(),
                })?
        }
        TargetColumn::Index(i) => {
            return Err(Error::MissingTargetColumn {
                path: source.to_path_buf(),
                column: format!("index {i}"),
                available: table.columns.clone(),
            })
        }
    };
    let n = table.rows.len();
    let feature_cols: Vec<usize> = (0..ncols).filter(|&j| j != target).collect();
    let x = DMatrix::from_fn(n, feature_cols.len(), |i, j| table.rows[i][feature_cols[j]]);
    let y = DVector::from_fn(n, |i, _| table.rows[i][target]);
    Ok(Dataset {
        x,
        y,
        feature_names: feature_cols
            .iter()
            .map(|&j| table.columns[j].clone())
            .collect(),
        target_name: table.columns[target].clone(),
        class_names: Vec::new(),
    })
}

/// A parsed numeric table: column names and rows of finite numbers.
struct Table {
    columns: Vec<String>,
    rows: Vec<Vec<f64>>,
    /// 1-based line of the first data row, kept for format checks that report lines.
    first_line: u64,
}

fn read_table<R: Read>(reader: R, source: &Path, delimiter: u8, has_header: bool) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        // Ragged rows are detected below so the error can say which line and how many fields.
        .flexible(true)
        .delimiter(delimiter)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let mut columns: Option<Vec<String>> = None;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut first_line = 0;
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(source, e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        // A line with only whitespace is not data; csv already skips truly empty lines.
        if record.len() == 1 && record[0].is_empty() {
            continue;
        }
        if columns.is_none() && has_header {
            columns = Some(record.iter().map(str::to_owned).collect());
            continue;
        }
        let names = columns
            .get_or_insert_with(|| (1..=record.len()).map(|j| format!("column {j}")).collect());
        if record.len() != names.len() {
            return Err(Error::RaggedRow {
                path: source.to_path_buf(),
                line,
                expected: names.len(),
                found: record.len(),
            });
        }
        if rows.is_empty() {
            first_line = line;
        }
        let row = record
            .iter()
            .enumerate()
            .map(|(j, cell)| parse_cell(cell, source, line, &names[j]))
            .collect::<Result<Vec<f64>>>()?;
        rows.push(row);
    }
    match columns {
        Some(columns) if !rows.is_empty() => Ok(Table {
            columns,
            rows,
            first_line,
        }),
        _ => Err(Error::EmptyFile {
            path: source.to_path_buf(),
        }),
    }
}

fn parse_cell(cell: &str, source: &Path, line: u64, column: &str) -> Result<f64> {
    let value: f64 = cell.parse().map_err(|_| Error::NonNumeric {
        path: source.to_path_buf(),
        line,
        column: column.to_owned(),
        value: cell.to_owned(),
    })?;
    if !value.is_finite() {
        return Err(Error::NonFinite {
            path: source.to_path_buf(),
            line,
            column: column.to_owned(),
            value: cell.to_owned(),
        });
    }
    Ok(value)
}

fn csv_error(source: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(source, io),
        csv::ErrorKind::Utf8 { err, .. } => Error::Csv {
            path: source.to_path_buf(),
            line,
            message: format!("field {} is not valid UTF-8", err.field() + 1),
        },
        other => Error::Csv {
            path: source.to_path_buf(),
            line,
            message: format!("{other:?}"),
        },
    }
}

fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file = std::io::BufReader::new(file);
    if path.extension().is_some_and(|e| e == "gz") {
        // Every member of the file: pigz and bgzip write several, and a plain
        // decoder stops silently after the first.
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// The `assets/` folder of this repository, fixed at compile time.
pub fn default_assets_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets"))
}

/// Diabetes progression (442 x 10, unscaled), regression target; from the default assets folder.
pub fn load_diabetes() -> Result<Dataset> {
    load_diabetes_from(default_assets_dir())
}

/// Wisconsin diagnostic breast cancer (569 x 30, 0 malignant / 1 benign); from the default assets folder.
pub fn load_breast_cancer() -> Result<Dataset> {
    load_breast_cancer_from(default_assets_dir())
}

/// Fisher's iris (150 x 4, three classes); from the default assets folder.
pub fn load_iris() -> Result<Dataset> {
    load_iris_from(default_assets_dir())
}

/// Wine recognition (178 x 13, three classes); from the default assets folder.
pub fn load_wine() -> Result<Dataset> {
    load_wine_from(default_assets_dir())
}

/// Hand-written digits (1797 x 64 pixels valued 0..16, ten classes); from the default assets folder.
pub fn load_digits() -> Result<Dataset> {
    load_digits_from(default_assets_dir())
}

/// [`load_diabetes`] reading `diabetes_data_raw.csv.gz` and `diabetes_target.csv.gz` from `dir`.
pub fn load_diabetes_from(dir: impl AsRef<Path>) -> Result<Dataset> {
    let dir = dir.as_ref();
    let data_path = dir.join("diabetes_data_raw.csv.gz");
    let target_path = dir.join("diabetes_target.csv.gz");
    let data = read_whitespace_table(&data_path)?;
    let target = read_whitespace_table(&target_path)?;
    let names = [
        "age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6",
    ];
    if data.columns.len() != names.len() {
        return Err(Error::BadFormat {
            path: data_path,
            message: format!(
                "expected {} columns, found {}",
                names.len(),
                data.columns.len()
            ),
        });
    }
    if target.columns.len() != 1 || target.rows.len() != data.rows.len() {
        return Err(Error::BadFormat {
            path: target_path,
            message: format!(
                "expected {} rows of one value, found {} rows of {}",
                data.rows.len(),
                target.rows.len(),
                target.columns.len()
            ),
        });
    }
    let n = data.rows.len();
    Ok(Dataset {
        x: DMatrix::from_fn(n, names.len(), |i, j| data.rows[i][j]),
        y: DVector::from_fn(n, |i, _| target.rows[i][0]),
        feature_names: names.iter().map(|s| s.to_string()).collect(),
        target_name: "progression".into(),
        class_names: Vec::new(),
    })
}

/// [`load_breast_cancer`] reading `breast_cancer.csv` from `dir`.
pub fn load_breast_cancer_from(dir: impl AsRef<Path>) -> Result<Dataset> {
    let stats = [
        "radius",
        "texture",
        "perimeter",
        "area",
        "smoothness",
        "compactness",
        "concavity",
        "concave points",
        "symmetry",
        "fractal dimension",
    ];
    let mut names: Vec<String> = stats.iter().map(|s| format!("mean {s}")).collect();
    names.extend(stats.iter().map(|s| format!("{s} error")));
    names.extend(stats.iter().map(|s| format!("worst {s}")));
    load_counted_csv(&dir.as_ref().join("breast_cancer.csv"), names, "diagnosis")
}

/// [`load_iris`] reading `iris.csv` from `dir`.
pub fn load_iris_from(dir: impl AsRef<Path>) -> Result<Dataset> {
    let names = [
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    ];
    load_counted_csv(
        &dir.as_ref().join("iris.csv"),
        names.iter().map(|s| s.to_string()).collect(),
        "species",
    )
}

/// [`load_wine`] reading `wine_data.csv` from `dir`.
pub fn load_wine_from(dir: impl AsRef<Path>) -> Result<Dataset> {
    let names = [
        "alcohol",
        "malic_acid",
        "ash",
        "alcalinity_of_ash",
        "magnesium",
        "total_phenols",
        "flavanoids",
        "nonflavanoid_phenols",
        "proanthocyanins",
        "color_intensity",
        "hue",
        "od280/od315_of_diluted_wines",
        "proline",
    ];
    load_counted_csv(
        &dir.as_ref().join("wine_data.csv"),
        names.iter().map(|s| s.to_string()).collect(),
        "cultivar",
    )
}

/// [`load_digits`] reading `digits.csv.gz` from `dir`.
pub fn load_digits_from(dir: impl AsRef<Path>) -> Result<Dataset> {
    let path = dir.as_ref().join("digits.csv.gz");
    let mut ds = load_csv(
        &path,
        &CsvOptions {
            target: TargetColumn::Last,
            has_header: false,
            delimiter: b',',
        },
    )?;
    if ds.n_features() != 64 {
        return Err(Error::BadFormat {
            path,
            message: format!(
                "expected 64 pixels then a label, found {} columns",
                ds.n_features() + 1
            ),
        });
    }
    check_labels(&path, &ds, 10)?;
    ds.feature_names = (0..8)
        .flat_map(|r| (0..8).map(move |c| format!("pixel_{r}_{c}")))
        .collect();
    ds.target_name = "digit".into();
    ds.class_names = (0..10).map(|d| d.to_string()).collect();
    Ok(ds)
}

/// Reads scikit-learn's layout: a first line `n_samples,n_features,class names...`, then rows of features and a label.
fn load_counted_csv(path: &Path, feature_names: Vec<String>, target_name: &str) -> Result<Dataset> {
    let reader = open_maybe_gz(path)?;
    let mut text = String::new();
    std::io::BufReader::new(reader)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    let (header, body) = text.split_once('\n').ok_or_else(|| Error::EmptyFile {
        path: path.to_path_buf(),
    })?;
    let fields: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    let bad_header = || Error::BadFormat {
        path: path.to_path_buf(),
        message: format!(
            "line 1: expected `n_samples,n_features,class names...`, found {header:?}"
        ),
    };
    if fields.len() < 4 {
        return Err(bad_header());
    }
    let n: usize = fields[0].parse().map_err(|_| bad_header())?;
    let p: usize = fields[1].parse().map_err(|_| bad_header())?;
    let class_names: Vec<String> = fields[2..].iter().map(|s| s.to_string()).collect();
    // Line numbers in errors must count the header line we consumed by hand.
    let table = read_table(body.as_bytes(), path, b',', false).map_err(|e| shift_line(e, 1))?;
    if table.rows.len() != n || table.columns.len() != p + 1 {
        return Err(Error::BadFormat {
            path: path.to_path_buf(),
            message: format!(
                "header promises {n} rows of {p} features and a label, found {} rows of {} columns (data from line {})",
                table.rows.len(),
                table.columns.len(),
                table.first_line + 1
            ),
        });
    }
    if feature_names.len() != p {
        return Err(Error::BadFormat {
            path: path.to_path_buf(),
            message: format!("expected {} features, header says {p}", feature_names.len()),
        });
    }
    let ds = Dataset {
        x: DMatrix::from_fn(n, p, |i, j| table.rows[i][j]),
        y: DVector::from_fn(n, |i, _| table.rows[i][p]),
        feature_names,
        target_name: target_name.into(),
        class_names,
    };
    check_labels(path, &ds, ds.class_names.len())?;
    Ok(ds)
}

fn shift_line(e: Error, by: u64) -> Error {
    match e {
        Error::Csv {
            path,
            line,
            message,
        } => Error::Csv {
            path,
            line: line + by,
            message,
        },
        Error::RaggedRow {
            path,
            line,
            expected,
            found,
        } => Error::RaggedRow {
            path,
            line: line + by,
            expected,
            found,
        },
        Error::NonNumeric {
            path,
            line,
            column,
            value,
        } => Error::NonNumeric {
            path,
            line: line + by,
            column,
            value,
        },
        Error::NonFinite {
            path,
            line,
            column,
            value,
        } => Error::NonFinite {
            path,
            line: line + by,
            column,
            value,
        },
        other => other,
    }
}

fn check_labels(path: &Path, ds: &Dataset, n_classes: usize) -> Result<()> {
    for (i, &v) in ds.y.iter().enumerate() {
        if v.fract() != 0.0 || v < 0.0 || v >= n_classes as f64 {
            return Err(Error::BadFormat {
                path: path.to_path_buf(),
                message: format!("row {}: label {v} is not one of 0..{n_classes}", i + 1),
            });
        }
    }
    Ok(())
}

/// Reads a whitespace-separated numeric table with no header (the diabetes files).
fn read_whitespace_table(path: &Path) -> Result<Table> {
    let mut text = String::new();
    open_maybe_gz(path)?
        .read_to_string(&mut text)
        .map_err(|e| Error::io(path, e))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut width = None;
    let mut first_line = 0;
    for (k, line_text) in text.lines().enumerate() {
        let line = k as u64 + 1;
        let cells: Vec<&str> = line_text.split_whitespace().collect();
        if cells.is_empty() {
            continue;
        }
        let expected = *width.get_or_insert(cells.len());
        if cells.len() != expected {
            return Err(Error::RaggedRow {
                path: path.to_path_buf(),
                line,
                expected,
                found: cells.len(),
            });
        }
        if rows.is_empty() {
            first_line = line;
        }
        let row = cells
            .iter()
            .enumerate()
            .map(|(j, c)| parse_cell(c, path, line, &format!("column {}", j + 1)))
            .collect::<Result<Vec<f64>>>()?;
        rows.push(row);
    }
    match width {
        Some(w) => Ok(Table {
            columns: (1..=w).map(|j| format!("column {j}")).collect(),
            rows,
            first_line,
        }),
        None => Err(Error::EmptyFile {
            path: path.to_path_buf(),
        }),
    }
}
