//! Typed errors of the library. This module imports nothing else of the crate, so every layer may
//! return these types without an import cycle.
//!
//! Every input error names the file (or `<built-in>` / `<api>` / `command line` for values that did
//! not come from a file), the record (job id, site name, line number, …) and the field, in one line,
//! so that a person can fix the input without reading code. The command prints any error on one
//! line and exits with code 2.

use std::path::PathBuf;

/// Errors returned by the gpuplace library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file in question (`<stdout>` for standard output).
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The input is malformed or out of range.
    #[error("{0}")]
    Input(#[from] InputError),
    /// A scoring backend could not be opened or used.
    #[error("{0}")]
    Score(#[from] ScoreError),
    /// Two backends gave different results (a bug; reported loudly, never averaged away).
    #[error("backends disagree: {0}")]
    Mismatch(String),
}

/// One bad value in the input: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {record}: field `{field}`: {message}")]
#[non_exhaustive]
pub struct InputError {
    /// File path, or `<built-in>` / `<api>` / `command line` for values that came from elsewhere.
    pub source_name: String,
    /// The record: `job "train-7"`, `line 12`, `site "iren-childress"`, `record 3`, …
    pub record: String,
    /// The field's name (a dotted path where nested, e.g. `clusters[0].used_gpus`).
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl InputError {
    /// Builds an input error. Control characters and line separators in any part (a field name
    /// or a value quoted from the input may hold them) are written as escapes, so that the error
    /// stays one line.
    pub fn new(
        source_name: impl Into<String>,
        record: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        InputError {
            source_name: one_line(&source_name.into()),
            record: one_line(&record.into()),
            field: one_line(&field.into()),
            message: one_line(&message.into()),
        }
    }
}

/// `text` with its control characters and line or paragraph separators escaped (`\n`, `\u{2028}`),
/// so that a message quoting input stays one line.
pub fn one_line(text: &str) -> String {
    let breaks = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.contains(breaks) {
        return text.to_string();
    }
    text.chars().map(|c| if breaks(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Why a scoring backend cannot be opened or go on. The CPU backend never fails; every variant
/// concerns a GPU adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScoreError {
    /// No adapter was found (no GPU, no driver, no software device), or the library was built
    /// without the `gpu` feature.
    #[error("GPU backend: no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("GPU backend: could not open a device on {adapter}: {message}")]
    RequestDevice {
        /// The adapter.
        adapter: String,
        /// What wgpu said.
        message: String,
    },
    /// The adapter scored the self-check problem differently from the CPU: it is not used.
    #[error("GPU backend: {adapter} failed the self-check against the CPU backend: {message}")]
    SelfCheck {
        /// The adapter.
        adapter: String,
        /// The first difference.
        message: String,
    },
    /// The device was lost (driver reset, removal, or destroyed).
    #[error("GPU backend: device lost: {0}")]
    DeviceLost(String),
    /// The device ran out of memory.
    #[error("GPU backend: out of memory: {0}")]
    OutOfMemory(String),
    /// wgpu reported a validation or internal error.
    #[error("GPU backend: validation error: {0}")]
    Validation(String),
    /// The fleet's tables do not fit in one binding of this device.
    #[error("GPU backend: {0}")]
    TooLarge(String),
}

/// Shorthand for the library's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
