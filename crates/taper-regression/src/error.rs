//! The crate's error type: every failure names the file, line, column or
//! parameter that caused it, so a user can fix the input without a debugger.

use std::path::PathBuf;

/// Shorthand for results whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading data, fitting, predicting or saving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused to read or write a file.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error (in the message, so not also a `source()`:
        /// a chain printer would say it twice).
        error: std::io::Error,
    },

    /// The CSV parser could not read a record (for instance invalid UTF-8).
    #[error("{}: line {line}: {message}", path.display())]
    Csv {
        /// The file involved.
        path: PathBuf,
        /// 1-based line of the offending record.
        line: u64,
        /// What the parser reported.
        message: String,
    },

    /// The file holds no data rows at all.
    #[error("{}: the file holds no data rows", path.display())]
    EmptyFile {
        /// The file involved.
        path: PathBuf,
    },

    /// A row has a different number of fields from the first row.
    #[error("{}: line {line}: expected {expected} fields, found {found}", path.display())]
    RaggedRow {
        /// The file involved.
        path: PathBuf,
        /// 1-based line of the offending row.
        line: u64,
        /// Field count of the first row (or of the header).
        expected: usize,
        /// Field count of this row.
        found: usize,
    },

    /// A cell could not be parsed as a number.
    #[error("{}: line {line}, column {column:?}: cannot read {value:?} as a number", path.display())]
    NonNumeric {
        /// The file involved.
        path: PathBuf,
        /// 1-based line of the offending row.
        line: u64,
        /// Name of the column (or `column N`, 1-based, when there is no header).
        column: String,
        /// The cell's text.
        value: String,
    },

    /// A cell parsed as NaN or infinity, which no estimator here can use.
    #[error("{}: line {line}, column {column:?}: value {value:?} is not a finite number", path.display())]
    NonFinite {
        /// The file involved.
        path: PathBuf,
        /// 1-based line of the offending row.
        line: u64,
        /// Name of the column (or `column N`, 1-based, when there is no header).
        column: String,
        /// The cell's text.
        value: String,
    },

    /// The requested target column does not exist.
    #[error("{}: no target column {column}; the columns are {available:?}", path.display())]
    MissingTargetColumn {
        /// The file involved.
        path: PathBuf,
        /// The name or index asked for.
        column: String,
        /// The columns the file does have.
        available: Vec<String>,
    },

    /// The file's layout disagrees with what its format promises (e.g. a header's row count).
    #[error("{}: {message}", path.display())]
    BadFormat {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// Fewer samples than unknowns, so least squares has no unique solution.
    #[error(
        "cannot fit ordinary least squares: {n_samples} samples for {n_unknowns} unknowns \
         ({n_features} features{}); add samples or use a penalty (ridge, lasso, elastic net)",
        if *intercept { " plus the intercept" } else { "" }
    )]
    Underdetermined {
        /// Rows of the design matrix.
        n_samples: usize,
        /// Columns of the design matrix.
        n_features: usize,
        /// Whether an intercept was fitted too.
        intercept: bool,
        /// Coefficients to determine.
        n_unknowns: usize,
    },

    /// The design matrix is rank-deficient (collinear or constant columns).
    #[error(
        "the design matrix is singular: feature {feature:?} is (numerically) a linear combination \
         of the features before it; drop it or use a penalty"
    )]
    Singular {
        /// The first feature found to depend on the others.
        feature: String,
    },

    /// Logistic regression was given labels of a single class.
    #[error("logistic regression needs at least two classes, but every label is {class}")]
    SingleClass {
        /// The only label present.
        class: usize,
    },

    /// An operation needs a two-class model (e.g. a decision threshold, ROC-AUC).
    #[error("this operation needs exactly two classes, found {n_classes}")]
    NotBinary {
        /// Number of classes present.
        n_classes: usize,
    },

    /// The input has a different number of features from the one the model was fitted on.
    #[error("expected {expected} features (as fitted), got {found}")]
    FeatureMismatch {
        /// Features seen at fit time.
        expected: usize,
        /// Features in the input.
        found: usize,
    },

    /// Two inputs that must line up have different lengths.
    #[error("{what}: lengths differ ({left} vs {right})")]
    LengthMismatch {
        /// Which inputs.
        what: &'static str,
        /// Length of the first.
        left: usize,
        /// Length of the second.
        right: usize,
    },

    /// An input that must hold data is empty.
    #[error("{what} is empty")]
    EmptyInput {
        /// Which input.
        what: &'static str,
    },

    /// An in-memory input holds NaN or infinity.
    #[error("{what} holds a non-finite value at row {row}, column {column} (0-based)")]
    NonFiniteInput {
        /// Which input.
        what: &'static str,
        /// 0-based row.
        row: usize,
        /// 0-based column.
        column: usize,
    },

    /// A class label is not usable (not a non-negative integer, or unknown to the model).
    #[error("invalid class label at index {index}: {message}")]
    InvalidLabel {
        /// 0-based position of the label.
        index: usize,
        /// What is wrong with it.
        message: String,
    },

    /// A hyper-parameter or argument is out of its valid range.
    #[error("invalid parameter {name}: {message}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// The accepted range, and what was given.
        message: String,
    },

    /// A saved model is incomplete or inconsistent.
    #[error("{}: {message}", path.display())]
    ModelFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// A JSON settings file could not be written or parsed.
    #[error("{}: {error}", path.display())]
    Json {
        /// The file involved.
        path: PathBuf,
        /// The underlying serde error (in the message, so not also a `source()`).
        error: serde_json::Error,
    },

    /// A tensor operation failed in candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Training through taper-train failed (a non-finite loss, a bad loader or optimizer setting).
    #[error(transparent)]
    Train(taper_train::Error),
}

impl From<taper_train::Error> for Error {
    fn from(e: taper_train::Error) -> Self {
        // One kind of failure keeps one variant here, whichever crate noticed it,
        // so callers match on `Io` or `ModelFile` without knowing about taper-train.
        match e {
            taper_train::Error::Io { path, error } => Error::Io { path, error },
            taper_train::Error::Candle(e) => Error::Candle(e),
            taper_train::Error::Checkpoint { path, msg } => Error::ModelFile { path, message: msg },
            other => Error::Train(other),
        }
    }
}

impl Error {
    /// Builds an [`Error::Io`] for `path`; saves repeating the struct at each call site.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// Builds an [`Error::InvalidParameter`].
    pub(crate) fn param(name: &'static str, message: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name,
            message: message.into(),
        }
    }
}
