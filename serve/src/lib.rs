//! gpuplace as a long-running service (`gpuplace serve`): one process holds the fleet, the policy,
//! the live ledger and every job it accepted; an HTTP/JSON API takes jobs, finishes them and shows
//! their state; every answer is given only after its change is durable in the state directory
//! (redb), so a restart after any crash restores exactly what was answered.
//!
//! - [`service`]: the state machine (submit, finish, scheduling rounds, restore), no I/O but the
//!   store;
//! - [`store`]: the durable state;
//! - [`server`]: the routes and the core thread that batches requests, places and commits;
//! - [`listen`]: accepting connections (how many, how long a request head may take);
//! - [`client`]: a blocking client;
//! - [`load`]: the load generator (`gpuplace load`);
//! - [`api`]: the bodies of the API (docs/API.md);
//! - [`kube`]: the Kubernetes scheduler-extender protocol (docs/KUBERNETES.md).

pub mod api;
pub mod client;
pub mod error;
pub mod kube;
pub mod listen;
pub mod load;
pub mod schema;
pub mod server;
pub mod service;
pub mod store;

pub use api::{JobState, JobView, JobsResponse};
pub use client::Client;
pub use error::ServeError;
pub use server::{Server, ServerConfig};
pub use service::{Service, ServiceConfig};
