//! Zero-downtime restart: the running gate starts its successor (the same binary
//! path, the same arguments) and hands it the listening sockets; the successor
//! serves them as they are, opens its own LoginSrv link and says when it is ready;
//! only then the predecessor stops accepting and drains.
//!
//! The sockets travel by systemd's socket-activation convention (`LISTEN_FDS`,
//! `LISTEN_PID`, `LISTEN_FDNAMES`, descriptors from 3 on), so a gate started by
//! `logingate.socket` receives its sockets the same way. Names: `gate` for client
//! listeners, `admin` for the console; an unnamed socket is a client listener.
//! Readiness comes back over an inherited pipe (`LOGINGATE_READY_FD`): one byte once
//! the successor's listeners and link are up; end of file without it means the
//! successor died.
//!
//! `LISTEN_PID` must be the successor's own pid, which exists only after `fork`; the
//! child therefore writes it into a buffer prepared beforehand and calls `execve`
//! itself, doing nothing between `fork` and `exec` that could allocate or lock
//! (std's `Command` cannot set a variable from the child's side).

#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::io;
use std::net::TcpListener as StdListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

/// Environment variable naming the readiness pipe's descriptor in the successor.
pub const READY_FD_ENV: &str = "LOGINGATE_READY_FD";
/// `LISTEN_FDNAMES` entry of a client listener.
pub const GATE_FD_NAME: &str = "gate";
/// `LISTEN_FDNAMES` entry of the console listener.
pub const ADMIN_FD_NAME: &str = "admin";
/// `LISTEN_FDNAMES` name of the embedded LoginSrv's SQLite lock file: the
/// successor shares the lock instead of being refused the database.
pub const DB_LOCK_FD_NAME: &str = "db_lock";
/// First descriptor of the convention.
const LISTEN_FDS_START: RawFd = 3;
/// Most descriptors handed over (client listeners, the console, the pipe).
const MAX_HANDED: usize = 64;

/// What this process was handed at start.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Listening client sockets, in the order they were passed.
    pub gate: Vec<StdListener>,
    /// The console's listening socket.
    pub admin: Option<StdListener>,
    /// Write end of the predecessor's readiness pipe: this process is a successor.
    pub ready: Option<OwnedFd>,
    /// The embedded LoginSrv's SQLite lock, shared with the predecessor.
    pub db_lock: Option<OwnedFd>,
}

impl Inherited {
    /// Takes the sockets and pipe passed by a predecessor or systemd, and clears the
    /// variables so no later child mistakes them for its own. Call before any thread
    /// starts (it changes the environment).
    pub fn take() -> io::Result<Inherited> {
        let mut inherited = Inherited::default();
        for (fd, name) in sd_notify::listen_fds_with_names(true)? {
            // SAFETY: the convention hands this process sole ownership of the
            // descriptors from 3 on (sd-notify checked LISTEN_PID and set CLOEXEC), and
            // nothing else in the process has taken them: this runs first in `main`.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            match name.as_str() {
                DB_LOCK_FD_NAME if inherited.db_lock.is_none() => inherited.db_lock = Some(owned),
                ADMIN_FD_NAME if inherited.admin.is_none() => {
                    inherited.admin = Some(StdListener::from(owned))
                }
                _ => inherited.gate.push(StdListener::from(owned)),
            }
        }
        if let Some(value) = std::env::var_os(READY_FD_ENV) {
            // Single-threaded still (see above): no other thread reads the
            // environment while it changes.
            std::env::remove_var(READY_FD_ENV);
            let fd: RawFd = value
                .to_str()
                .and_then(|v| v.parse().ok())
                .filter(|fd| *fd >= LISTEN_FDS_START)
                .ok_or_else(|| io::Error::other(format!("{READY_FD_ENV} is not a descriptor")))?;
            // SAFETY: the predecessor passed this pipe end to us alone, above the
            // listeners; it is closed on exec so a later child does not keep it open.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            set_cloexec(owned.as_raw_fd())?;
            inherited.ready = Some(owned);
        }
        Ok(inherited)
    }
}

/// Tells the predecessor this process is ready (listeners and link up); closing the
/// pipe afterwards leaves it nothing more to wait for.
pub fn signal_ready(pipe: OwnedFd) -> io::Result<()> {
    use std::io::Write;
    std::fs::File::from(pipe).write_all(b"R")
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns; no memory is passed.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A started successor and the read end of its readiness pipe.
#[derive(Debug)]
pub struct Successor {
    /// The process, to kill if it never becomes ready.
    pub child: Child,
    /// Readable once the successor wrote its byte or died.
    ready: OwnedFd,
}

/// Why a successor did not take over.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// It exited (a bad config, a port, a missing binary) before being ready.
    #[error("the new process exited before it was ready ({0})")]
    Exited(std::process::ExitStatus),
    /// It closed the pipe without a word (and is killed).
    #[error("the new process closed its readiness pipe without being ready")]
    Silent,
    /// Not ready within `gate.restart_ready_timeout_secs` (and is killed).
    #[error("the new process was not ready within {0:?} (gate.restart_ready_timeout_secs)")]
    Timeout(Duration),
    /// Waiting for it failed.
    #[error("waiting for the new process: {0}")]
    Io(#[from] io::Error),
}

/// Kills the successor if the wait for it is abandoned (a stop signal meanwhile):
/// it must not take clients that nobody hands over to it.
struct KillUnlessReady(Option<Child>);

impl Drop for KillUnlessReady {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            drop(std::thread::spawn(move || child.wait()));
        }
    }
}

impl Successor {
    /// Waits until the successor is ready, or kills it (timeout, silence, or this
    /// future dropped) and says why.
    pub async fn wait_ready(self, timeout: Duration) -> Result<u32, NotReady> {
        let pid = self.child.id();
        let mut guard = KillUnlessReady(Some(self.child));
        let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(self.ready)?;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(timeout, async {
            use tokio::io::AsyncReadExt;
            pipe.read(&mut byte).await
        })
        .await;
        let why = match read {
            Ok(Ok(1)) => {
                // Ready: it lives on after this process.
                drop(guard.0.take());
                return Ok(pid);
            }
            Ok(Ok(_)) => {
                // The pipe closes with the process: give its exit status a moment.
                tokio::time::sleep(Duration::from_millis(200)).await;
                match guard.0.as_mut().map(Child::try_wait).transpose()?.flatten() {
                    Some(status) => NotReady::Exited(status),
                    None => NotReady::Silent,
                }
            }
            Ok(Err(e)) => NotReady::Io(e),
            Err(_) => NotReady::Timeout(timeout),
        };
        // Dropping the guard kills what is left of it (reaped on a thread: a child
        // stuck in uninterruptible sleep must not stall the runtime).
        drop(guard);
        Err(why)
    }
}

/// The program to start: this binary's path as the kernel knows it. After an
/// upgrade replaced the file, `/proc/self/exe` reads `PATH (deleted)`; the new file at
/// `PATH` is the one wanted.
fn program() -> io::Result<OsString> {
    let exe = std::env::current_exe()?;
    let bytes = exe.as_os_str().as_bytes();
    let trimmed = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    Ok(std::ffi::OsStr::from_bytes(trimmed).to_owned())
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("argument or variable holds a NUL byte"))
}

/// Raw pointers prepared before `fork` for the child's `execve`.
struct ExecPlan {
    /// Program path.
    path: CString,
    /// Owners of the strings the pointer arrays point into.
    _args: Vec<CString>,
    _env: Vec<CString>,
    /// `argv`, null-terminated.
    argv: Vec<*const libc::c_char>,
    /// `envp`, null-terminated; one entry points at `listen_pid`.
    envp: Vec<*const libc::c_char>,
    /// `LISTEN_PID=` followed by room for the digits and a NUL, filled in the child.
    listen_pid: Box<[u8; 32]>,
    /// Descriptors to place at 3, 4, …, in order (the last is the pipe's write end).
    fds: Vec<RawFd>,
}

// SAFETY: the pointers refer to heap data owned by the plan itself, which moves with
// it; only the forked child (a single thread) dereferences them.
unsafe impl Send for ExecPlan {}
// SAFETY: as above; the parent never reads through the pointers.
unsafe impl Sync for ExecPlan {}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl ExecPlan {
    /// In the child, between `fork` and `exec`: async-signal-safe calls only.
    fn exec(&mut self) -> io::Result<()> {
        let count = self.fds.len();
        let mut moved = [0 as RawFd; MAX_HANDED];
        let floor = LISTEN_FDS_START + count as RawFd;
        for (slot, &fd) in moved.iter_mut().zip(&self.fds) {
            // SAFETY: fcntl/dup2 on descriptors the process holds; duplicating above
            // the target range first means no target overwrites a source.
            *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
            if *slot == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        for (i, &fd) in moved[..count].iter().enumerate() {
            // SAFETY: see above; dup2 clears close-on-exec on the target.
            if unsafe { libc::dup2(fd, LISTEN_FDS_START + i as RawFd) } == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: getpid cannot fail.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (pid % 10) as u8;
            n += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let buf = &mut self.listen_pid[LISTEN_PID_PREFIX.len()..];
        for (i, d) in digits[..n].iter().rev().enumerate() {
            buf[i] = *d;
        }
        buf[n] = 0;
        // SAFETY: path, argv and envp are NUL-terminated strings in null-terminated
        // arrays, all alive (owned by `self`) for the call; execve returns only on error.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Err(io::Error::last_os_error())
    }
}

/// Starts the successor with `listeners` (descriptor and `LISTEN_FDNAMES` name each)
/// and a readiness pipe. The same arguments, the same environment besides the
/// convention's variables.
pub fn spawn(listeners: &[(RawFd, &str)]) -> io::Result<Successor> {
    if listeners.len() + 1 > MAX_HANDED {
        return Err(io::Error::other(format!(
            "at most {} listeners can be handed over",
            MAX_HANDED - 1
        )));
    }
    let mut pipe = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array it is given.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both descriptors, owned by nothing else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(pipe[0]), OwnedFd::from_raw_fd(pipe[1])) };

    let program = program()?;
    let path = cstring(program.as_bytes())?;
    let args: Vec<CString> = std::iter::once(Ok(path.clone()))
        .chain(std::env::args_os().skip(1).map(|a| cstring(a.as_bytes())))
        .collect::<io::Result<_>>()?;
    let names: Vec<&str> = listeners.iter().map(|(_, n)| *n).collect();
    let ready_fd = LISTEN_FDS_START + listeners.len() as RawFd;
    let ours = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", READY_FD_ENV];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k.as_bytes() == o.as_bytes()))
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstring(&kv)
        })
        .collect::<io::Result<_>>()?;
    env.push(cstring(
        format!("LISTEN_FDS={}", listeners.len()).as_bytes(),
    )?);
    env.push(cstring(
        format!("LISTEN_FDNAMES={}", names.join(":")).as_bytes(),
    )?);
    env.push(cstring(format!("{READY_FD_ENV}={ready_fd}").as_bytes())?);
    let mut listen_pid = Box::new([0u8; 32]);
    listen_pid[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(listen_pid.as_ptr().cast());
    envp.push(std::ptr::null());
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut fds: Vec<RawFd> = listeners.iter().map(|(fd, _)| *fd).collect();
    fds.push(write_end.as_raw_fd());
    let mut plan = ExecPlan {
        path,
        _args: args,
        _env: env,
        argv,
        envp,
        listen_pid,
        fds,
    };
    let mut command = Command::new(&program);
    // SAFETY: the closure runs in the forked child and only calls fcntl, dup2, getpid
    // and execve on memory prepared before the fork (see `ExecPlan::exec`).
    unsafe {
        command.pre_exec(move || plan.exec());
    }
    let child = command.spawn()?;
    drop(write_end);
    Ok(Successor {
        child,
        ready: read_end,
    })
}

/// Writes `pid` to `path` atomically (a temporary file beside it, then a rename), so a
/// reader never sees a partial pid.
pub fn write_pid_file(path: &std::path::Path, pid: u32) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{pid}.tmp"));
    let tmp = std::path::PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(format!("{pid}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The pid in `path`, if it holds one.
pub fn read_pid_file(path: &std::path::Path) -> io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{} does not hold a pid", path.display())))
}

/// Removes `path` if it still names this process (a successor that took it over
/// keeps it).
pub fn remove_pid_file(path: &std::path::Path) {
    if read_pid_file(path).ok() == Some(std::process::id()) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove the pid file");
        }
    }
}

/// Sends SIGUSR2 to the gate whose pid is in `pid_file` (`logingate restart`).
pub fn signal_restart(pid_file: &std::path::Path) -> io::Result<u32> {
    let pid = read_pid_file(pid_file)?;
    let pid_t = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) with a plain pid and signal number.
    if unsafe { libc::kill(pid_t, libc::SIGUSR2) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pid_file_is_written_whole_and_removed_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.pid");
        write_pid_file(&path, std::process::id()).unwrap();
        assert_eq!(read_pid_file(&path).unwrap(), std::process::id());
        write_pid_file(&path, 1).unwrap();
        remove_pid_file(&path);
        assert!(path.exists(), "another process's pid file stays");
        write_pid_file(&path, std::process::id()).unwrap();
        remove_pid_file(&path);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temporary left"
        );
    }

    #[test]
    fn a_replaced_binary_is_found_at_its_path() {
        let p = program().unwrap();
        assert!(!p.as_bytes().ends_with(b" (deleted)"));
    }
}
