//! Helpers of the command's tests: run the real binary, temporary directories, GPU presence.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn gpuplace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpuplace")).args(args).output().expect("run gpuplace")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gpuplace-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Says that part of a test did not run, where a person running `cargo test` sees it: the test
/// harness captures `eprintln!` of passing tests, so this writes to the process's standard error
/// directly. The line starts with `SKIPPED` so that it stands out among the `ok` lines.
pub fn skip_notice(test: &str, what: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {what}");
}

pub const AT: &str = "2026-11-26";

/// True when wgpu finds an adapter; without one the test says it skips (or fails, with
/// `GPUPLACE_REQUIRE_GPU=1`, as in CI).
pub fn gpu_available(test: &str) -> bool {
    #[cfg(feature = "gpu")]
    let found = !gpuplace::gpu::adapters().is_empty();
    #[cfg(not(feature = "gpu"))]
    let found = false;
    if !found {
        assert!(
            std::env::var("GPUPLACE_REQUIRE_GPU").map_or(true, |v| v != "1"),
            "{test}: GPUPLACE_REQUIRE_GPU=1 but wgpu found no adapter"
        );
        skip_notice(test, "the GPU side (wgpu found no adapter; see the README for Mesa's software devices)");
    }
    found
}

/// Runs the binary with `args` and extra environment variables.
pub fn gpuplace_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gpuplace"));
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run gpuplace")
}

/// Asserts the error contract for an input error: exit code 2, one line on stderr containing every
/// needle, no panic, nothing on stdout.
pub fn assert_fails_cleanly(what: &str, output: &Output, needles: &[&str]) {
    assert_fails_with(2, what, output, needles);
}

/// Asserts the error contract for an output or device error: exit code 3, and the rest as
/// [`assert_fails_cleanly`].
pub fn assert_output_fails(what: &str, output: &Output, needles: &[&str]) {
    assert_fails_with(3, what, output, needles);
}

fn assert_fails_with(code: i32, what: &str, output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{what}: exit code; stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: not one line: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    for needle in needles {
        assert!(err.contains(needle), "{what}: error lacks {needle:?}: {err}");
    }
}
