//! The `gpuplace` command: parses arguments and hands them to the library. Each command's work is
//! in `commands/`, text rendering in `render.rs`, files in `output.rs`.

mod args;
mod commands;
mod output;
mod plot;
mod progress;
mod render;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    // Like other Unix filters, end quietly when the reader of our output goes away (`| head`)
    // instead of failing on the write.
    // SAFETY: restoring the default disposition of SIGPIPE before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    // Held to the end of `main`: a directory made for this run only is removed then.
    let _runtime_dir = cli.command.may_open_gpu().then(quiet_runtime_dir).flatten();
    // `serve` handles SIGTERM and SIGINT itself (it finishes requests and flushes its state); it
    // writes no output file to clean up.
    if !matches!(cli.command, args::Command::Serve { .. }) {
        output::cleanup_on_signals();
    }
    // For the test that runs every example of --help and the README: examples too slow for a debug
    // build are parsed, not run (see cli/tests/examples.rs). Debug builds only.
    if cfg!(debug_assertions) && std::env::var_os("GPUPLACE_CHECK_ARGS_ONLY").is_some_and(|v| v == "1") {
        return ExitCode::SUCCESS;
    }
    match commands::run(cli.command) {
        Ok(commands::Done::Complete) => ExitCode::SUCCESS,
        Ok(commands::Done::SomeUnplaced) => ExitCode::from(1),
        Err(error) => {
            // One line: the library's errors already name the file, record and field, and include
            // their causes; wgpu's multi-line diagnostics are folded onto the line.
            let message = one_line(&error);
            render::note(&format!("error: {message}"));
            ExitCode::from(exit_code(&error))
        }
    }
}

/// Mesa's Vulkan and EGL drivers print "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment." when they probe for a display, which reads like one of our errors though nothing
/// failed (gpuplace never opens a window). When the variable is unset or does not name a directory
/// by an absolute path (the drivers refuse a relative one), point it at a private per-user
/// directory: `$TMPDIR/gpuplace-runtime-UID` (mode 0700, created if missing, used only if it is
/// ours and no one else can enter it), else a fresh temporary directory for this run, returned so
/// that it is removed at the end. Otherwise leave it alone.
fn quiet_runtime_dir() -> Option<tempfile::TempDir> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let usable = |dir: &std::path::Path| dir.is_absolute() && dir.is_dir();
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| usable(std::path::Path::new(&dir))) {
        return None;
    }
    // SAFETY: getuid cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    let tmp = std::path::absolute(std::env::temp_dir()).ok()?;
    let shared = tmp.join(format!("gpuplace-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&shared);
    let private = std::fs::symlink_metadata(&shared)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0);
    // `tempfile` creates its directories with mode 0700.
    let (dir, made) = if private {
        (shared, None)
    } else {
        let made = tempfile::Builder::new().prefix("gpuplace-runtime-").tempdir_in(&tmp).ok()?;
        (made.path().to_path_buf(), Some(made))
    };
    // SAFETY: called in `main` before any other thread exists (argument parsing starts none), so
    // nothing reads the environment concurrently.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    made
}

/// The exit code of an error (the table is in `args.rs`'s help and in the README): 3 for an output
/// that could not be written and for a GPU backend that could not be used (or disagreed with the
/// CPU); 2 for everything else, which is the user's command line or input.
fn exit_code(error: &anyhow::Error) -> u8 {
    let device = |e: &gpuplace::Error| matches!(e, gpuplace::Error::Score(_) | gpuplace::Error::Mismatch(_));
    if error.downcast_ref::<output::OutputError>().is_some()
        || error.downcast_ref::<gpuplace::ScoreError>().is_some()
        || error.downcast_ref::<gpuplace::Error>().is_some_and(device)
        || error.downcast_ref::<gpuplace_serve::ServeError>().is_some_and(|e| e.is_output_failure())
    {
        3
    } else {
        2
    }
}

/// The error and its causes on one line: a cause already quoted in the message before it (the
/// library's errors include their sources) is not repeated; wgpu's multi-line diagnostics are
/// folded.
fn one_line(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Help and version go to stdout (exit 0); a usage error is one line on stderr, with clap's tip if
/// it has one, and exit 2, like every other error.
fn usage_error(error: &clap::Error) -> ExitCode {
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let text = error.render().to_string();
    // The error line and the lines that continue it (clap lists missing arguments below it), and
    // any tip; not the usage that follows.
    let mut parts: Vec<String> = Vec::new();
    let mut in_error = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("error:") {
            parts.push(rest.trim().to_string());
            in_error = true;
        } else if line.starts_with("tip:") {
            parts.push(line.to_string());
            in_error = false;
        } else if line.is_empty() || line.starts_with("Usage:") {
            in_error = false;
        } else if in_error && let Some(last) = parts.last_mut() {
            last.push(' ');
            last.push_str(line);
        }
    }
    if parts.is_empty() {
        // Help shown because a subcommand or argument is missing.
        parts.push("a subcommand or argument is missing".into());
    }
    render::note(&format!("error: {} (see --help)", parts.join("; ")));
    ExitCode::from(2)
}
