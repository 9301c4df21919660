//! One process per SQLite file: an exclusive `flock` on `<file>.lock`.
//!
//! SQLite's own locks let two processes share a file, and two LoginSrv on
//! one file would each believe they are alone (sessions, instance slots).
//! A `flock` on a side file rather than `PRAGMA locking_mode=EXCLUSIVE`:
//! the exclusive mode would also shut out this process's own pooled
//! connections (WAL without shared memory admits one connection), a second
//! process would only see "database is locked" at its first write, and
//! nothing could wait for it. The kernel drops a `flock` when its holder
//! exits, kill -9 included, so a stale lock never needs cleaning.
//!
//! A restart hands the lock over instead: a `flock` belongs to the open file
//! description, so a successor that inherits the descriptor ([`DbLock::adopt`])
//! holds the same lock while its predecessor drains, and keeps it when the
//! predecessor exits. Only the two generations of one program share the file
//! that way; an unrelated process is still refused.
//! [`DbLock::acquire_with_timeout`] lets a process instead wait for the holder to
//! let go (`sqlite_lock_wait_secs` > 0).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{flock, FlockOperation};

/// How often a waiting process retries the lock.
const RETRY: Duration = Duration::from_millis(50);

/// An exclusive lock on a SQLite file, held until dropped.
#[derive(Debug)]
pub struct DbLock {
    /// The open lock file; closing it releases the lock.
    _file: File,
    /// `<db>.lock`, for messages.
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (its pid as written in the file, if readable).
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's process id.
        holder: Option<u32>,
    },
    /// The lock file cannot be created or locked.
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, holder } => {
                write!(
                    f,
                    "another LoginSrv uses this SQLite database (lock {} held",
                    path.display()
                )?;
                if let Some(pid) = holder {
                    write!(f, " by process {pid}")?;
                }
                write!(
                    f,
                    "); one SQLite file serves one instance, use PostgreSQL for several"
                )
            }
            LockError::Io { path, error } => {
                write!(f, "cannot lock {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for LockError {}

impl DbLock {
    /// The lock file of database file `db`.
    pub fn path_for(db: &Path) -> PathBuf {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Take the lock of `db` now, or fail naming the holder.
    pub fn acquire(db: &Path) -> Result<DbLock, LockError> {
        Self::acquire_with_timeout(db, Duration::ZERO)
    }

    /// Take the lock of `db`, waiting up to `wait` for its holder to release it.
    pub fn acquire_with_timeout(db: &Path, wait: Duration) -> Result<DbLock, LockError> {
        let path = Self::path_for(db);
        let io = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => break,
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    if Instant::now() >= deadline {
                        let mut text = String::new();
                        let _ = file.read_to_string(&mut text);
                        return Err(LockError::Held {
                            path,
                            holder: text.trim().parse().ok(),
                        });
                    }
                    std::thread::sleep(RETRY);
                }
                Err(e) => return Err(io(e.into())),
            }
        }
        Self::held(file, path)
    }

    /// Take over the lock of `db` through `inherited`, a descriptor of its lock
    /// file that a predecessor passed down (it shares the predecessor's lock). A
    /// descriptor of another file is refused; the lock is then taken as by
    /// [`DbLock::acquire_with_timeout`].
    pub fn adopt(db: &Path, inherited: OwnedFd, wait: Duration) -> Result<DbLock, LockError> {
        let path = Self::path_for(db);
        let file = File::from(inherited);
        let same = match (file.metadata(), std::fs::metadata(&path)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        };
        if !same {
            tracing::warn!(lock = %path.display(), "an inherited lock descriptor is not this database's lock file; taking the lock anew");
            return Self::acquire_with_timeout(db, wait);
        }
        // The same open file description already holds the lock: this succeeds
        // at once, and fails only if the predecessor never held it.
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Self::held(file, path),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Self::acquire_with_timeout(db, wait),
            Err(e) => Err(LockError::Io {
                path,
                error: e.into(),
            }),
        }
    }

    /// Records this process as the holder (for the next process's message).
    fn held(mut file: File, path: PathBuf) -> Result<DbLock, LockError> {
        let io = |error| LockError::Io {
            path: path.clone(),
            error,
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DbLock { _file: file, path })
    }

    /// The lock file's descriptor, to hand the lock to a successor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self._file.as_fd()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_second_lock_is_refused_then_granted_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("accounts.db");
        let first = DbLock::acquire(&db).unwrap();
        // flock locks belong to the open file description: a second open conflicts.
        let err = DbLock::acquire(&db).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("accounts.db.lock"), "{text}");
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        let waiter = std::thread::spawn({
            let db = db.clone();
            move || DbLock::acquire_with_timeout(&db, Duration::from_secs(10)).map(|_| ())
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        waiter.join().unwrap().unwrap();
    }

    #[test]
    fn an_inherited_descriptor_shares_the_lock_and_another_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("accounts.db");
        let first = DbLock::acquire(&db).unwrap();
        let handed = first.as_fd().try_clone_to_owned().unwrap();
        let second = DbLock::adopt(&db, handed, Duration::ZERO).unwrap();
        // Still one lock: an unrelated opener is refused while either holds it.
        drop(first);
        assert!(DbLock::acquire(&db).is_err());
        drop(second);
        DbLock::acquire(&db).unwrap();

        let holder = DbLock::acquire(&db).unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"").unwrap();
        let stranger: OwnedFd = File::open(&other).unwrap().into();
        assert!(DbLock::adopt(&db, stranger, Duration::ZERO).is_err());
        drop(holder);
    }
}
