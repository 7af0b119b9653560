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

fn main() -> ExitCode {
    // Like other Unix filters, end quietly when the reader of our output goes away (`| head`)
    // instead of failing on the write.
    // SAFETY: restoring the default disposition of SIGPIPE before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    output::cleanup_on_signals();
    let cli = args::Cli::parse();
    match commands::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line: the library's errors already name the file, record and field, and include
            // their causes; wgpu's multi-line diagnostics are folded onto the line.
            let message = one_line(&error);
            render::note(&format!("error: {message}"));
            ExitCode::from(2)
        }
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
