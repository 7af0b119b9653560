//! Writing what the user asked for, and nothing else.
//!
//! Every file a command writes is planned before the command does its work ([`Outputs::plan`]):
//! a path that names one of the command's inputs, a directory, a directory that does not exist or
//! cannot be written, a socket, or the same file twice is refused then, so a long run does not end
//! in an error about its output. At the end the files are written ([`Outputs::write`]): each
//! regular file is first written in full to a temporary file beside it and synced; devices and
//! FIFOs are then written through; only when all of that succeeded are the temporary files renamed
//! into place, one after another. A failure before the renames leaves every old file as it was and
//! no temporary file behind; so does SIGINT, SIGTERM or SIGHUP (see [`cleanup_on_signals`]).
//!
//! Putting a regular file in place renames the temporary file over it, keeping the old file's
//! permissions (and, for root, its owner). A symbolic link is followed: its target is replaced,
//! the link stays. A device or FIFO is written through, never replaced (`--out /dev/null`, a named
//! pipe), and so is a file reached through `/proc/…/fd` or `/dev/fd` (`--out /dev/stdout`, appended
//! to whatever stdout is).

use std::fs::{File, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
            // The list stays locked until the process ends: a file being created meanwhile is
            // never listed, so never left behind unlisted after this sweep.
            let mut listed = temporary();
            for path in listed.drain(..) {
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
    /// A regular file (existing or not) at this path, symbolic links resolved, and its identity:
    /// (device, inode) when it exists, else its directory's canonical path and its name.
    Regular { path: PathBuf, existing: Option<std::fs::Metadata>, identity: Identity },
    /// A device or FIFO, or a file reached through one of this process's descriptors (`/dev/stdout`,
    /// `/dev/fd/N`, `/proc/self/fd/N`: then `fd`, written through a duplicate of it so that it
    /// shares the descriptor's offset): written through, never replaced.
    Special { path: PathBuf, fd: Option<i32>, identity: Identity },
}

/// What makes two paths the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    New(PathBuf),
}

/// The outputs of one command.
#[derive(Debug, Default)]
pub struct Outputs {
    /// (device, inode) of every input file, and its path.
    inputs: Vec<((u64, u64), PathBuf)>,
    planned: Vec<(PathBuf, Target)>,
}

/// An output that could not be written, refused or failed: exit code 3 (see `main.rs`).
#[derive(Debug)]
pub struct OutputError(gpuplace::Error);

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for OutputError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

fn io_error(path: &Path, source: std::io::Error) -> anyhow::Error {
    OutputError(Error::Io { path: path.into(), source }).into()
}

fn refuse(path: &Path, message: String) -> anyhow::Error {
    OutputError(InputError::new("command line", path.display().to_string(), "(output)", message).into()).into()
}

/// Where a path leads.
struct Resolved {
    /// The file, following symbolic links by their text (so a dangling link leads to the file it
    /// would create).
    path: PathBuf,
    /// True when the way passed through `/proc` or `/dev/fd`, whose links name open files rather
    /// than paths to replace.
    through_fd: bool,
    /// The descriptor of this process the way named (`/dev/fd/1`, `/proc/self/fd/1`), if any.
    fd: Option<i32>,
}

/// The descriptor `path` names, if it is `/dev/fd/N`, `/proc/self/fd/N` or `/proc/<our pid>/fd/N`.
fn own_fd(path: &Path) -> Option<i32> {
    let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
    let n = match parts.as_slice() {
        ["/", "dev", "fd", n] => n,
        ["/", "proc", pid, "fd", n] if *pid == "self" || *pid == std::process::id().to_string() => n,
        _ => return None,
    };
    n.parse().ok()
}

fn resolve(path: &Path) -> std::io::Result<Resolved> {
    let mut path = path.to_path_buf();
    let (mut through_fd, mut fd) = (false, None);
    for _ in 0..40 {
        through_fd |= path.starts_with("/proc") || path.starts_with("/dev/fd");
        fd = fd.or_else(|| own_fd(&path));
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                path = if target.is_absolute() { target } else { base.join(target) };
            }
            _ => return Ok(Resolved { path, through_fd, fd }),
        }
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// True when the current user has `mode` (`libc::W_OK`, …) on `path` (for a directory, W_OK and
/// X_OK: may create files in it).
fn writable(path: &Path, mode: i32) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    unsafe { libc::access(c_path.as_ptr(), mode) == 0 }
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

    /// True when an output goes to this process's standard output (`-`, `/dev/stdout`): the
    /// command's summary then goes to standard error.
    pub fn uses_stdout(&self) -> bool {
        self.planned.iter().any(|(_, t)| matches!(t, Target::Special { fd: Some(1), .. }))
    }

    /// Checks that `path` can be written without touching anything else, and plans it. `-` is
    /// standard output.
    pub fn plan(&mut self, path: &Path) -> anyhow::Result<OutputId> {
        if path.as_os_str().is_empty() {
            return Err(refuse(path, "an empty path".into()));
        }
        if path == Path::new("-") {
            if self.uses_stdout() {
                return Err(refuse(path, "standard output is named twice among the outputs".into()));
            }
            let identity = Identity::New(PathBuf::from("<stdout>"));
            self.planned
                .push((path.to_path_buf(), Target::Special { path: path.to_path_buf(), fd: Some(1), identity }));
            return Ok(OutputId(self.planned.len() - 1));
        }
        let Resolved { path: resolved, through_fd, fd } = resolve(path).map_err(|e| io_error(path, e))?;
        let target = match std::fs::metadata(path) {
            Ok(meta) => {
                if let Some((_, input)) = self.inputs.iter().find(|(id, _)| *id == (meta.dev(), meta.ino())) {
                    return Err(refuse(
                        path,
                        format!("is also an input ({}): refusing to overwrite it", input.display()),
                    ));
                }
                let identity = Identity::Inode(meta.dev(), meta.ino());
                let kind = meta.file_type();
                if kind.is_dir() {
                    return Err(refuse(path, "is a directory".into()));
                }
                if kind.is_socket() {
                    return Err(refuse(path, "is a socket, which cannot be opened as a file".into()));
                }
                if kind.is_char_device() || kind.is_block_device() || kind.is_fifo() || through_fd {
                    Target::Special { path: path.to_path_buf(), fd, identity }
                } else {
                    Target::Regular { path: resolved, existing: Some(meta), identity }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = resolved.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let dir = match std::fs::canonicalize(dir) {
                    Ok(dir) if dir.is_dir() => dir,
                    Ok(dir) => return Err(refuse(path, format!("{} is not a directory", dir.display()))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(refuse(path, format!("its directory {} does not exist", dir.display())));
                    }
                    Err(e) => return Err(io_error(dir, e)),
                };
                let Some(name) = resolved.file_name() else {
                    return Err(refuse(path, "names no file".into()));
                };
                Target::Regular { path: resolved.clone(), existing: None, identity: Identity::New(dir.join(name)) }
            }
            Err(e) => return Err(io_error(path, e)),
        };
        // Standard output, however spelled (`-`, `/dev/stdout`, `/proc/self/fd/1`), takes one
        // document: two would run together.
        if matches!(target, Target::Special { fd: Some(1), .. }) && self.uses_stdout() {
            return Err(refuse(path, "standard output is named twice among the outputs".into()));
        }
        // Two outputs may share a device (`/dev/null` twice, stdout and stderr on one terminal),
        // but a regular file must be written by one of them only.
        let regular = |t: &Target| matches!(t, Target::Regular { .. });
        let identity = |t: &Target| match t {
            Target::Regular { identity, .. } | Target::Special { identity, .. } => identity.clone(),
        };
        if let Some((other, _)) =
            self.planned.iter().find(|(_, t)| (regular(t) || regular(&target)) && identity(t) == identity(&target))
        {
            return Err(refuse(path, format!("is the same file as the output {}", other.display())));
        }
        match &target {
            Target::Regular { path: file, .. } => {
                let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if !writable(dir, libc::W_OK | libc::X_OK) {
                    return Err(refuse(path, format!("cannot create files in {}", dir.display())));
                }
            }
            Target::Special { path: special, fd: None, .. } if !writable(special, libc::W_OK) => {
                return Err(refuse(path, "cannot be written".into()));
            }
            Target::Special { .. } => {}
        }
        self.planned.push((path.to_path_buf(), target));
        Ok(OutputId(self.planned.len() - 1))
    }

    /// Writes the planned outputs: `contents` gives each one's writer; outputs planned but not given
    /// are not written. Every regular file is first written in full to a temporary file beside it;
    /// then the special outputs (devices, FIFOs) are written through, since nothing can undo them;
    /// only then are the temporary files renamed into place, one after another. A failure before the
    /// renames leaves every regular file as it was.
    pub fn write(self, contents: Vec<(OutputId, Content)>) -> anyhow::Result<()> {
        // A reader of a FIFO going away must be an error here, not a kill that leaves the
        // temporary files behind.
        let _sigpipe = SigpipeIgnored::new();
        let mut staged = Vec::new();
        let mut special = Vec::new();
        for (id, content) in contents {
            let (shown, target) = &self.planned[id.0];
            match target {
                Target::Regular { path, existing, .. } => {
                    staged.push((shown, path, stage(shown, path, existing.as_ref(), content)?));
                }
                Target::Special { path, fd, .. } => special.push((shown, path, *fd, content)),
            }
        }
        for (shown, path, fd, content) in special {
            let mut out = match fd {
                Some(fd) => duplicate(fd),
                None => std::fs::OpenOptions::new().write(true).open(path),
            }
            .map_err(|e| io_error(shown, e))?;
            let mut writer = BufWriter::with_capacity(1 << 20, &mut out);
            let written = content(&mut writer).and_then(|()| writer.flush());
            match written {
                // The reader of our own stdout went away (`--out /dev/stdout | head`): end quietly,
                // as SIGPIPE would, without putting anything else in place.
                Err(e) if fd.is_some() && e.kind() == std::io::ErrorKind::BrokenPipe => {
                    drop(staged);
                    std::process::exit(128 + libc::SIGPIPE);
                }
                written => written.map_err(|e| io_error(shown, e))?,
            }
        }
        for (shown, path, temp) in staged {
            temp.persist(path).map_err(|e| io_error(shown, e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && let Ok(dir) = File::open(dir)
            {
                // The rename is durable once the directory is.
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

/// A new descriptor for what `fd` refers to, sharing its offset (so that what is written through
/// it and what is printed to it later come out in that order).
fn duplicate(fd: i32) -> std::io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: dup(2) returns a new descriptor this process owns, or -1.
    let copy = unsafe { libc::dup(fd) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor owned by nothing else.
    Ok(unsafe { File::from_raw_fd(copy) })
}

/// SIGPIPE ignored while it lives (writes to a closed pipe then fail with EPIPE), restored to the
/// default (a quiet end, for `gpuplace … | head`) when dropped.
struct SigpipeIgnored;

impl SigpipeIgnored {
    fn new() -> SigpipeIgnored {
        // SAFETY: changing a signal's disposition; no handler code runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        SigpipeIgnored
    }
}

impl Drop for SigpipeIgnored {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
}

/// What to write into an output.
pub type Content = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()>>;

/// A temporary file beside its target, listed for removal on a signal while it exists. Dropped
/// unpersisted, it deletes itself.
struct Registered(Option<tempfile::NamedTempFile>);

impl Registered {
    /// Creates the file with `create` while holding the list's lock, so that a signal handled
    /// meanwhile waits for it to be listed and then removes it.
    fn create(create: impl FnOnce() -> std::io::Result<tempfile::NamedTempFile>) -> std::io::Result<Registered> {
        let mut listed = temporary();
        let file = create()?;
        listed.push(file.path().to_path_buf());
        Ok(Registered(Some(file)))
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

/// Writes `content` to a temporary file beside `path`, synced, with the permissions of the file it
/// will replace (or 0666 less the umask for a new one).
fn stage(
    shown: &Path,
    path: &Path,
    existing: Option<&std::fs::Metadata>,
    content: Content,
) -> anyhow::Result<Registered> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut temp = Registered::create(|| {
        tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(dir)
    })
    .map_err(|e| io_error(shown, e))?;
    if let Some(meta) = existing {
        let file = temp.file().as_file();
        file.set_permissions(Permissions::from_mode(meta.mode() & 0o7777)).map_err(|e| io_error(shown, e))?;
        // Only root may give a file away; anyone else keeps their own.
        let _ = std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()));
    }
    let file = temp.file().as_file_mut();
    let mut writer = BufWriter::with_capacity(1 << 20, &mut *file);
    content(&mut writer).and_then(|()| writer.flush()).map_err(|e| io_error(shown, e))?;
    drop(writer);
    file.sync_all().map_err(|e| io_error(shown, e))?;
    Ok(temp)
}

/// Prints to standard output; a failure (a full disk behind `>`) is an error naming `<stdout>`, not
/// a panic. A closed pipe (`| head`) ends the process quietly through SIGPIPE.
pub fn print(text: &str) -> anyhow::Result<()> {
    print_with(|w| w.write_all(text.as_bytes()))
}

/// Streams `write` to standard output, buffered, with [`print`]'s errors.
pub fn print_with(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> anyhow::Result<()> {
    let stdout = std::io::stdout().lock();
    let mut buffered = BufWriter::with_capacity(1 << 20, stdout);
    write(&mut buffered).and_then(|()| buffered.flush()).map_err(|e| io_error(Path::new("<stdout>"), e))
}

/// An output of jobs, streamed in `format`. The workload must be validated.
pub fn jobs_content(workload: gpuplace::Workload, format: gpuplace::model::jobs::JobsFormat) -> Content {
    Box::new(move |w: &mut dyn Write| write_jobs(&workload, format, w))
}

/// Writes jobs in `format`.
pub fn write_jobs(
    workload: &gpuplace::Workload,
    format: gpuplace::model::jobs::JobsFormat,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    workload.write_as(format, w)
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
