//! Every example of every `--help` page and every command of the README runs as written, through
//! the real binary with `gpuplace` (and `cargo run --release --`) standing for it.
//!
//! Each help page's examples run in order in an empty directory of their own, so a page's examples
//! make the files they use; the README's run in order in one directory, whose `../shared` is the
//! repository's `../shared` (the README runs from the repository root). Trace files named bare in
//! help pages are linked into the directory from `../shared/traces`; where that folder is absent,
//! the examples from the first one that needs a trace on are skipped, with a `SKIPPED` line.
//!
//! Examples that take minutes in a debug build (the engine cross-checks every decision against the
//! reference rule there, which is what makes it slow) are only parsed: the debug binary, with
//! `GPUPLACE_CHECK_ARGS_ONLY=1` (a hook of debug builds only), stops after parsing its arguments.
//! `.ci/run` sets `GPUPLACE_EXAMPLES_BIN` to a release binary, which runs them all, except those
//! marked as too slow for a software GPU. Commands run under `bash -o pipefail`, so a failure
//! anywhere in a pipeline counts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{skip_notice, stderr, stdout, temp_dir};

/// Examples too slow for a debug build: parsed there, run with a release binary.
const SLOW_IN_DEBUG: [&str; 11] = [
    "load --in-system 100000",
    "inflate --nodes",
    "--count 100000",
    "--count 20000",
    "replay --fleet openb-fleet.json",
    "replay --fleet fleet.json",
    "compare --fleet",
    "compare --count 5000",
    "replay --jobs conv-jobs.json",
    "compare --jobs",
    "gpuplace bench",
];

/// Examples too slow even for a release binary on a software GPU (minutes on lavapipe): parsed only.
const SLOW_EVERYWHERE: [&str; 1] = ["--count 1000000"];

/// Examples of the service: `serve` runs until stopped and the clients need it running, so they
/// are parsed only; `cli/tests/serve.rs` and `serve/tests/` run the service and its clients.
const NEEDS_A_SERVER: [&str; 4] = ["gpuplace serve", "gpuplace submit", "gpuplace status", "gpuplace finish"];

fn binary() -> (PathBuf, bool) {
    match std::env::var_os("GPUPLACE_EXAMPLES_BIN") {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_gpuplace")), false),
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn traces() -> PathBuf {
    repo().join("../shared/traces")
}

/// A page's or a document's examples, in order.
struct Examples {
    source: String,
    commands: Vec<String>,
}

/// The lines of `text` that start (after indentation and an optional `$ `) with `gpuplace ` or
/// `cargo run --release -- `, with `\` continuations joined.
fn commands_in(lines: &[&str]) -> Vec<String> {
    let mut commands = Vec::new();
    let mut pending: Option<String> = None;
    for raw in lines {
        let line = raw.trim();
        if let Some(mut command) = pending.take() {
            command.push(' ');
            command.push_str(line.trim_end_matches('\\').trim());
            if line.ends_with('\\') {
                pending = Some(command);
            } else {
                commands.push(command);
            }
            continue;
        }
        let line = line.strip_prefix("$ ").unwrap_or(line);
        let line = match line.strip_prefix("cargo run --release -- ") {
            Some(rest) => format!("gpuplace {rest}"),
            // `echo '…' > FILE` writes an input file the next examples read (a tenants file).
            None if line.starts_with("gpuplace ") || line == "gpuplace" || line.starts_with("echo ") => {
                line.to_string()
            }
            None => continue,
        };
        if line.ends_with('\\') {
            pending = Some(line.trim_end_matches('\\').trim().to_string());
        } else {
            commands.push(line);
        }
    }
    commands
}

/// The subcommand paths of `gpuplace [path] --help`'s "Commands:" section, recursively.
fn command_paths(prefix: &[String]) -> Vec<Vec<String>> {
    let help = help(prefix);
    let mut paths = vec![prefix.to_vec()];
    let Some(start) = help.find("Commands:") else { return paths };
    for line in help[start..].lines().skip(1) {
        if line.trim().is_empty() {
            break;
        }
        let name = line.split_whitespace().next().unwrap().to_string();
        if name != "help" {
            paths.extend(command_paths(&[prefix, &[name]].concat()));
        }
    }
    paths
}

fn help(path: &[String]) -> String {
    let output = Command::new(binary().0).args(path).arg("--help").output().unwrap();
    assert!(output.status.success(), "{path:?} --help: {}", stderr(&output));
    stdout(&output)
}

fn help_examples() -> Vec<Examples> {
    command_paths(&[])
        .into_iter()
        .map(|path| {
            let text = help(&path);
            let start = text.find("Examples:").unwrap_or_else(|| panic!("gpuplace {path:?} --help has no examples"));
            let lines: Vec<&str> = text[start..].lines().skip(1).take_while(|l| !l.trim().is_empty()).collect();
            let source = format!("gpuplace {} --help", path.join(" "));
            let commands = commands_in(&lines);
            assert!(!commands.is_empty(), "{source}: no example");
            Examples { source, commands }
        })
        .collect()
}

fn readme_examples() -> Examples {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = matches!(line.trim(), "```sh" | "```text" | "```console");
            if line.trim() == "```" {
                in_block = false;
            }
            continue;
        }
        if in_block {
            lines.push(line);
        }
    }
    Examples { source: "README.md".into(), commands: commands_in(&lines) }
}

/// Whether `command` needs a file of the public traces.
fn needs_traces(command: &str) -> bool {
    ["openb_", "AzureLLMInferenceTrace_", "../shared/"].iter().any(|name| command.contains(name))
}

/// Runs `examples` in order in `dir`; returns how many ran in full and how many were only parsed.
fn run_all(examples: &Examples, dir: &Path) -> (usize, usize) {
    let (bin, release) = binary();
    let (mut ran, mut parsed) = (0, 0);
    for command in &examples.commands {
        if needs_traces(command) && !traces().is_dir() {
            skip_notice(&examples.source, &format!("`{command}` and what follows: {} is absent", traces().display()));
            break;
        }
        let parse_only = SLOW_EVERYWHERE.iter().chain(&NEEDS_A_SERVER).any(|s| command.contains(s))
            || (!release && SLOW_IN_DEBUG.iter().any(|s| command.contains(s)));
        let script = format!("gpuplace() {{ \"$GPUPLACE_BIN\" \"$@\"; }}\n{command}\n");
        let mut shell = Command::new("bash");
        shell.args(["-o", "pipefail", "-c"]).arg(&script).current_dir(dir);
        if parse_only {
            let debug = env!("CARGO_BIN_EXE_gpuplace");
            shell.env("GPUPLACE_BIN", debug).env("GPUPLACE_CHECK_ARGS_ONLY", "1");
            parsed += 1;
        } else {
            shell.env("GPUPLACE_BIN", &bin).env_remove("GPUPLACE_CHECK_ARGS_ONLY");
            ran += 1;
        }
        let output = shell.output().unwrap();
        assert!(
            output.status.success(),
            "{}: `{command}` exited with {:?}\nstderr: {}",
            examples.source,
            output.status.code(),
            stderr(&output)
        );
        for word in ["error:", "panicked"] {
            assert!(!stderr(&output).contains(word), "{}: `{command}`: {}", examples.source, stderr(&output));
        }
    }
    (ran, parsed)
}

/// A working directory `work` whose `../shared` is the repository's, with the trace files linked
/// into it by their bare names.
fn workdir(name: &str) -> PathBuf {
    let base = temp_dir(name);
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let shared = repo().join("../shared");
    if shared.is_dir() {
        std::os::unix::fs::symlink(shared.canonicalize().unwrap(), base.join("shared")).unwrap();
    }
    if let Ok(dirs) = std::fs::read_dir(traces()) {
        for entry in dirs.flatten().flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten()) {
            if entry.path().extension().is_some_and(|e| e == "csv") {
                std::os::unix::fs::symlink(entry.path(), work.join(entry.file_name())).unwrap();
            }
        }
    }
    work
}

fn parsed_only(parsed: usize, ran: usize) -> String {
    if binary().1 {
        format!("{parsed} examples too slow for a software GPU were parsed, not run ({ran} ran)")
    } else {
        format!(
            "{parsed} slow examples were parsed, not run ({ran} ran); GPUPLACE_EXAMPLES_BIN=<release binary> runs them"
        )
    }
}

#[test]
fn every_help_example_runs() {
    let pages = help_examples();
    assert!(pages.len() >= 12, "only {} help pages found", pages.len());
    let (mut ran, mut parsed) = (0, 0);
    for (i, page) in pages.iter().enumerate() {
        let (r, p) = run_all(page, &workdir(&format!("help-examples-{i}")));
        (ran, parsed) = (ran + r, parsed + p);
    }
    if parsed > 0 {
        skip_notice("every_help_example_runs", &parsed_only(parsed, ran));
    }
    assert!(ran > 20, "only {ran} examples ran");
}

#[test]
fn every_readme_command_runs() {
    let examples = readme_examples();
    assert!(examples.commands.len() >= 5, "{:?}", examples.commands);
    assert!(
        examples.commands.iter().any(|c| c.split(" #").next().unwrap().trim() == "gpuplace place"),
        "the README's first command is missing"
    );
    let (ran, parsed) = run_all(&examples, &workdir("readme-examples"));
    if parsed > 0 {
        skip_notice("every_readme_command_runs", &parsed_only(parsed, ran));
    }
}

/// The negative control: an example that fails is reported, whichever way it fails.
#[test]
fn a_failing_example_is_caught() {
    for bad in [
        "gpuplace explain --job no-such-job",
        "gpuplace place --no-such-flag",
        "gpuplace generate --count 5 | gpuplace place --jobs - --nope | cat",
        "gpuplace place --count 5 --jobs-format csv || echo failed",
    ] {
        let examples = Examples { source: "test".into(), commands: vec![bad.into()] };
        let dir = workdir("failing-example");
        let caught = std::panic::catch_unwind(|| run_all(&examples, &dir));
        assert!(caught.is_err(), "`{bad}` passed");
    }
    assert_eq!(
        commands_in(&["  gpuplace a \\", "      --b c", "$ cargo run --release -- place", "cargo test", "# gpuplace"]),
        vec!["gpuplace a --b c".to_string(), "gpuplace place".to_string()]
    );
}
