//! Typed errors of the library.
//!
//! Every input error names the file (or `<built-in>` / `<api>` for values built in Rust), the record
//! (job id, site name, line number, …) and the field, in one line, so that a person can fix the input
//! without reading code. The binary maps every [`Error`] of kind [`Error::Input`] to exit code 2.

use std::path::PathBuf;

/// Errors returned by the gpuplace library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file in question.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The input is malformed or out of range.
    #[error("{0}")]
    Input(#[from] InputError),
    /// Two backends gave different results (a bug; reported loudly, never averaged away).
    #[error("backends disagree: {0}")]
    Mismatch(String),
    /// The GPU backend could not be used (no adapter, device lost, out of memory, validation).
    #[error("GPU backend: {0}")]
    Gpu(#[from] crate::gpu::GpuError),
}

/// One bad value in the input: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {record}: field `{field}`: {message}")]
pub struct InputError {
    /// File path, or `<built-in>` / `<api>` for values that came from Rust.
    pub source_name: String,
    /// The record: `job "train-7"`, `line 12`, `site "iren-childress"`, `record 3`, …
    pub record: String,
    /// The field's name (a dotted path where nested, e.g. `clusters[0].used_gpus`).
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

impl InputError {
    /// Builds an input error.
    pub fn new(
        source_name: impl Into<String>,
        record: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        InputError {
            source_name: source_name.into(),
            record: record.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Shorthand for the library's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the error is the user's input (exit code 2 in the CLI) rather than the environment.
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_))
    }
}

/// Reads a whole input file, naming it in the error.
pub(crate) fn read_input(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })
}

/// Parses one JSON document (and nothing after it) into `T`; errors name the record and field.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str, source_name: &str) -> Result<T, InputError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| json_error(source_name, err))?;
    deserializer
        .end()
        .map_err(|err| InputError::new(source_name, "document", "(top level)", format!("trailing data: {err}")))?;
    Ok(value)
}

/// Turns a `serde_path_to_error` failure of a JSON document into an [`InputError`] naming the record
/// and the field. `record_of` maps the path's leading array index (if any) to a record name.
pub(crate) fn json_error(source_name: &str, err: serde_path_to_error::Error<serde_json::Error>) -> InputError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let (record, field) = split_json_path(&path);
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("malformed JSON at line {} column {}: {inner}", inner.line(), inner.column())
    } else {
        format!("{} (line {} column {})", strip_position(&inner.to_string()), inner.line(), inner.column())
    };
    InputError::new(source_name, record, field, message)
}

/// serde_json appends " at line L column C" to its messages; we report the position once, ourselves.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Splits a serde path such as `jobs[3].gpus` or `sites[0].clusters[1].racks` into a record
/// (`record 3` / `sites[0]`) and a field (`gpus` / `clusters[1].racks`).
fn split_json_path(path: &str) -> (String, String) {
    if path == "." || path.is_empty() {
        return ("document".into(), "(top level)".into());
    }
    // The record is everything up to and including the first array index.
    if let Some(close) = path.find(']') {
        let record = &path[..=close];
        let rest = path[close + 1..].trim_start_matches('.');
        let field = if rest.is_empty() { "(record)" } else { rest };
        let record = match record.strip_prefix("jobs[") {
            Some(index) => format!("record {}", index.trim_end_matches(']')),
            None => record.to_string(),
        };
        return (record, field.to_string());
    }
    ("document".into(), path.to_string())
}
