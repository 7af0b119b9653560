//! The service's errors. A damaged or mismatched state directory is the user's input (the command
//! exits 2); a store that fails while serving is an output error (exit 3).

use std::path::PathBuf;

/// What can go wrong opening, running or calling the service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The state directory cannot be used as it is: damaged, truncated, of another format, of
    /// another fleet, or held by another server. Nothing was changed.
    #[error("{path}: {record}: {message}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What in it (`(file)`, `meta fleet`, `job 17`).
        record: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed while serving (disk full, I/O error): the server stops, and what it had
    /// acknowledged is on disk.
    #[error("{path}: the store failed: {message}")]
    Store {
        /// The state file.
        path: PathBuf,
        /// The store's error.
        message: String,
    },
    /// The listening address cannot be used.
    #[error("--listen {address}: {message}")]
    Listen {
        /// The address asked for.
        address: String,
        /// Why.
        message: String,
    },
    /// A request to a server failed, or the server answered with an error.
    #[error("{url}: {message}")]
    Client {
        /// The request's URL.
        url: String,
        /// The server's HTTP status, when it answered.
        status: Option<u16>,
        /// The server's answer or the transport's error.
        message: String,
    },
    /// The library refused an input (the fleet or policy given to the server).
    #[error(transparent)]
    Library(#[from] gpuplace::Error),
}

impl ServeError {
    /// Whether the command should exit 3 (the store, the device or the connection failed, or the
    /// server could not answer) rather than 2 (an input is wrong: refused with a 4xx status).
    pub fn is_output_failure(&self) -> bool {
        matches!(
            self,
            ServeError::Store { .. }
                | ServeError::Client { status: None | Some(500..), .. }
                | ServeError::Library(gpuplace::Error::Score(_) | gpuplace::Error::Mismatch(_))
        )
    }
}
