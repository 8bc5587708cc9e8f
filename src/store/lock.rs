//! One writer per directory: an exclusive lock on a file inside it.
//!
//! A run directory (and a sweep directory's bookkeeping) is written by the
//! process that holds the exclusive lock on its `.clustermoe.lock`. The lock
//! is the operating system's (`flock` on Unix, `LockFileEx` on Windows): it
//! goes with the open file, so a process that dies, even by SIGKILL or a
//! pre-empted node, leaves no stale lock behind. The file itself stays (it
//! holds the last holder's process id, for the message of a refused writer);
//! removing it while a writer runs would let a second writer lock a new file
//! of the same name.
//!
//! Readers (`merge`, `load`) never hold the lock while they read: a complete
//! run is checked against its completion record instead. Only to tell a
//! run in progress from an abandoned one does a reader take the lock, shared
//! and for an instant; a writer therefore retries for a short grace before it
//! calls a directory busy.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The lock file's name, in the directory it guards.
pub const LOCK_FILE: &str = ".clustermoe.lock";

/// How long a writer retries before it calls a directory in use: longer
/// than a reader's look (microseconds), far shorter than any run.
const GRACE: Duration = Duration::from_millis(50);

/// An exclusive lock on a directory, released when dropped (or when the
/// process ends, however it ends). A run's [`RunWriter`](crate::store::RunWriter)
/// holds one; [`SweepDir::bookkeeping_lock`](crate::store::SweepDir::bookkeeping_lock)
/// hands out a sweep directory's.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

/// Opens (creating if needed) the lock file of `dir`.
fn open(dir: &Path) -> Result<(PathBuf, File)> {
    let path = dir.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map(|f| (path.clone(), f))
        .map_err(|e| Error::io("cannot open the lock file", &path, e))
}

/// The message of a file system that cannot lock (NFS mounted `nolock`).
fn unsupported(path: &Path, e: std::io::Error) -> Error {
    Error::io(
        "cannot lock (does this file system support locks? NFS needs its lock service)",
        path,
        e,
    )
}

impl DirLock {
    /// Takes the exclusive lock of `dir` (which must exist), retrying for a
    /// short grace; [`Error::InUse`] if another process holds it.
    pub(crate) fn exclusive(dir: &Path) -> Result<Self> {
        let (path, mut file) = open(dir)?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if start.elapsed() < GRACE => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::InUse {
                        path: dir.to_path_buf(),
                        holder: holder(&mut file),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(unsupported(&path, e)),
            }
        }
        // The holder's process id, for the message another writer gets.
        let pid = std::process::id().to_string();
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()));
        Ok(DirLock { file })
    }

    /// Waits for the exclusive lock of `dir` (which must exist), for
    /// bookkeeping that takes an instant.
    pub(crate) fn wait(dir: &Path) -> Result<Self> {
        let (path, file) = open(dir)?;
        file.lock().map_err(|e| unsupported(&path, e))?;
        Ok(DirLock { file })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Whether another process holds the lock of `dir` now (false if `dir` has
/// no lock file). Takes the lock shared for an instant, so two readers
/// never disturb each other.
pub(crate) fn is_held(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

/// The process id written by the lock's holder, if it can be read.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Blocks until no process holds the exclusive lock of `dir` (for a caller
/// that needs a run another process is finishing).
#[cfg_attr(not(feature = "report"), allow(dead_code))]
pub(crate) fn wait_until_free(dir: &Path) -> Result<()> {
    if !dir.join(LOCK_FILE).exists() {
        return Ok(());
    }
    let (path, file) = open(dir)?;
    file.lock_shared().map_err(|e| unsupported(&path, e))?;
    let _ = file.unlock();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::exclusive(dir.path()).unwrap();
        assert!(is_held(dir.path()));
        match DirLock::exclusive(dir.path()) {
            Err(Error::InUse { path, holder }) => {
                assert_eq!(path, dir.path());
                assert_eq!(holder, Some(std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        assert!(!is_held(dir.path()));
        let _second = DirLock::exclusive(dir.path()).unwrap();
    }

    #[test]
    fn a_reader_looking_does_not_make_a_writer_fail() {
        let dir = tempfile::tempdir().unwrap();
        drop(DirLock::exclusive(dir.path()).unwrap());
        let file = File::open(dir.path().join(LOCK_FILE)).unwrap();
        file.try_lock_shared().unwrap();
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            file.unlock().unwrap();
        });
        // Held shared by the "reader" when this starts: the grace covers it.
        DirLock::exclusive(dir.path()).unwrap();
        reader.join().unwrap();
    }
}
