//! Writing what the user asked for, and nothing else.
//!
//! Every file a command writes is planned before the command does its work ([`Outputs::plan`]):
//! a path that names one of the command's inputs, a directory, a missing directory, or the same
//! file twice is refused then, so a long run never ends in an error about its output. At the end
//! all files are written in two phases ([`Outputs::write`]): each is first written in full to a
//! temporary file (beside a regular file, or elsewhere for a special one) and synced; only when
//! every one succeeded are they put in place. A failure leaves every old file as it was and no
//! temporary file behind; so does SIGINT, SIGTERM or SIGHUP (see [`cleanup_on_signals`]).
//!
//! Putting a regular file in place renames the temporary file over it, keeping the old file's
//! permissions (and, for root, its owner). A symbolic link is followed: its target is replaced,
//! the link stays. A device, FIFO or socket is written through, never replaced (`--out
//! /dev/null`, `--out /dev/stdout`, a named pipe).

use std::fs::{File, Permissions};
use std::io::{BufWriter, Seek, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use gpuplace::{Error, InputError};

/// Temporary files being written, removed if a signal ends the process.
static TEMPORARY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn temporary() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temporary files of [`Outputs::write`] and exits with 128 + the signal's number
/// when SIGINT, SIGTERM or SIGHUP arrives. Call once, at the start of `main`.
pub fn cleanup_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            for path in temporary().drain(..) {
                let _ = std::fs::remove_file(path);
            }
            std::process::exit(128 + signal);
        }
    });
}

/// A planned output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputId(usize);

#[derive(Debug)]
enum Target {
    /// A regular file (existing or not) at this path, symbolic links resolved.
    Regular { path: PathBuf, existing: Option<std::fs::Metadata> },
    /// A device, FIFO or socket: written through.
    Special { path: PathBuf },
}

/// The outputs of one command.
#[derive(Debug, Default)]
pub struct Outputs {
    /// (device, inode) of every input file, and its path.
    inputs: Vec<((u64, u64), PathBuf)>,
    planned: Vec<(PathBuf, Target)>,
}

fn io_error(path: &Path, source: std::io::Error) -> anyhow::Error {
    Error::Io { path: path.into(), source }.into()
}

fn refuse(path: &Path, message: String) -> anyhow::Error {
    InputError::new("command line", path.display().to_string(), "(output)", message).into()
}

/// The file a path leads to: symbolic links followed, even a dangling one (whose target is then
/// created).
fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                path = if target.is_absolute() { target } else { base.join(target) };
            }
            _ => return Ok(path),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

impl Outputs {
    /// Outputs of a command that reads `inputs` (files that do not exist are ignored: reading them
    /// fails on its own).
    pub fn new<'a>(inputs: impl IntoIterator<Item = &'a Path>) -> Outputs {
        let inputs = inputs
            .into_iter()
            .filter_map(|path| std::fs::metadata(path).ok().map(|m| ((m.dev(), m.ino()), path.to_path_buf())))
            .collect();
        Outputs { inputs, planned: Vec::new() }
    }

    /// Checks that `path` can be written without touching anything else, and plans it.
    pub fn plan(&mut self, path: &Path) -> anyhow::Result<OutputId> {
        if path.as_os_str().is_empty() {
            return Err(refuse(path, "an empty path".into()));
        }
        let resolved = resolve(path).map_err(|e| io_error(path, e))?;
        let target = match std::fs::metadata(&resolved) {
            Ok(meta) => {
                if let Some((_, input)) = self.inputs.iter().find(|(id, _)| *id == (meta.dev(), meta.ino())) {
                    return Err(refuse(
                        path,
                        format!("is also an input ({}): refusing to overwrite it", input.display()),
                    ));
                }
                if let Some((other, _)) = self.planned.iter().find(|(_, t)| match t {
                    Target::Regular { existing: Some(m), .. } => (m.dev(), m.ino()) == (meta.dev(), meta.ino()),
                    _ => false,
                }) {
                    return Err(refuse(path, format!("is the same file as the output {}", other.display())));
                }
                let kind = meta.file_type();
                if kind.is_dir() {
                    return Err(refuse(path, "is a directory".into()));
                }
                if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() || kind.is_socket() {
                    Target::Special { path: resolved }
                } else {
                    Target::Regular { path: resolved, existing: Some(meta) }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = resolved.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                match std::fs::metadata(dir) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(refuse(path, format!("{} is not a directory", dir.display()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(refuse(path, format!("its directory {} does not exist", dir.display())));
                    }
                    Err(e) => return Err(io_error(dir, e)),
                }
                if resolved.file_name().is_none() {
                    return Err(refuse(path, "names no file".into()));
                }
                if self.planned.iter().any(|(_, t)| matches!(t, Target::Regular { path: p, .. } if *p == resolved)) {
                    return Err(refuse(path, "is named twice among the outputs".into()));
                }
                Target::Regular { path: resolved, existing: None }
            }
            Err(e) => return Err(io_error(path, e)),
        };
        self.planned.push((path.to_path_buf(), target));
        Ok(OutputId(self.planned.len() - 1))
    }

    /// Writes the planned outputs, all or none: `contents` gives each one's writer. Outputs planned
    /// but not given are not written.
    pub fn write(self, contents: Vec<(OutputId, Content)>) -> anyhow::Result<()> {
        let mut staged = Vec::with_capacity(contents.len());
        // Phase 1: everything to temporary files. Dropping `staged` on an error deletes them.
        for (id, content) in contents {
            let (shown, target) = &self.planned[id.0];
            staged.push((shown.clone(), target, stage(shown, target, content)?));
        }
        // Phase 2: into place.
        for (shown, target, file) in staged {
            match (target, file) {
                (Target::Regular { path, .. }, Staged::Beside(temp)) => {
                    temp.persist(path).map_err(|e| io_error(&shown, e))?;
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                        && let Ok(dir) = File::open(dir)
                    {
                        // The rename is durable once the directory is.
                        let _ = dir.sync_all();
                    }
                }
                (Target::Special { path }, Staged::Elsewhere(mut temp)) => {
                    temp.rewind().map_err(|e| io_error(&shown, e))?;
                    let mut out =
                        std::fs::OpenOptions::new().write(true).open(path).map_err(|e| io_error(&shown, e))?;
                    std::io::copy(&mut temp, &mut out).map_err(|e| io_error(&shown, e))?;
                    out.flush().map_err(|e| io_error(&shown, e))?;
                }
                _ => unreachable!("staged as planned"),
            }
        }
        Ok(())
    }
}

/// What to write into an output.
pub type Content = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()>>;

enum Staged {
    Beside(Registered),
    Elsewhere(File),
}

/// A temporary file beside its target, listed for removal on a signal while it exists. Dropped
/// unpersisted, it deletes itself.
struct Registered(Option<tempfile::NamedTempFile>);

impl Registered {
    fn new(file: tempfile::NamedTempFile) -> Registered {
        temporary().push(file.path().to_path_buf());
        Registered(Some(file))
    }

    fn file(&mut self) -> &mut tempfile::NamedTempFile {
        self.0.as_mut().expect("not yet persisted")
    }

    /// Renames it over `path`.
    fn persist(mut self, path: &Path) -> std::io::Result<()> {
        let file = self.0.take().expect("not yet persisted");
        let temp_path = file.path().to_path_buf();
        let result = file.persist(path).map(drop).map_err(|e| {
            // Put it back, so that dropping it deletes it.
            self.0 = Some(e.file);
            e.error
        });
        if result.is_ok() {
            temporary().retain(|p| *p != temp_path);
        }
        result
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(file) = &self.0 {
            let path = file.path().to_path_buf();
            temporary().retain(|p| *p != path);
        }
    }
}

/// Writes `content` to a temporary file for `target`, synced, with the target's permissions.
fn stage(shown: &Path, target: &Target, content: Content) -> anyhow::Result<Staged> {
    let fill = |file: &mut File| -> std::io::Result<()> {
        let mut writer = BufWriter::with_capacity(1 << 20, &mut *file);
        content(&mut writer)?;
        writer.flush()?;
        drop(writer);
        file.sync_all()
    };
    match target {
        Target::Regular { path, existing } => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            // A new file gets the usual 0666 less the umask; an existing one keeps its mode.
            let mut temp = Registered::new(
                tempfile::Builder::new()
                    .prefix(&format!(".{name}."))
                    .suffix(".tmp")
                    .permissions(Permissions::from_mode(0o666))
                    .tempfile_in(dir)
                    .map_err(|e| io_error(shown, e))?,
            );
            if let Some(meta) = existing {
                let file = temp.file().as_file();
                file.set_permissions(Permissions::from_mode(meta.mode() & 0o7777)).map_err(|e| io_error(shown, e))?;
                // Only root may give a file away; anyone else keeps their own.
                let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
            }
            fill(temp.file().as_file_mut()).map_err(|e| io_error(shown, e))?;
            Ok(Staged::Beside(temp))
        }
        Target::Special { .. } => {
            let mut file = tempfile::tempfile().context("creating a temporary file")?;
            fill(&mut file).map_err(|e| io_error(shown, e))?;
            Ok(Staged::Elsewhere(file))
        }
    }
}

/// Prints to standard output; a failure (a full disk behind `>`) is an error naming `<stdout>`, not
/// a panic. A closed pipe (`| head`) ends the process quietly through SIGPIPE.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| io_error(Path::new("<stdout>"), e))
}

/// Writes `value` as pretty JSON and a final newline, streamed.
pub fn write_json(w: &mut dyn Write, value: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, value)?;
    w.write_all(b"\n")
}

/// An output of pretty JSON.
pub fn json_content<T: serde::Serialize + 'static>(value: T) -> Content {
    Box::new(move |w: &mut dyn Write| write_json(w, &value))
}
