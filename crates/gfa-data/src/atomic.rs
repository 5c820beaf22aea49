//! The one way gfa writes a file: all of it or none of it, also across a power failure.
//!
//! [`write_atomic`] writes to a temporary file in the destination's folder, flushes it to disk
//! (`fsync`), renames it over the destination and then flushes the folder, so that the rename
//! itself is on disk. A reader (or a process started after a crash) sees the old file or the
//! new one, never a prefix of either. Temporary files are named by their owner,
//! `.tmp.<pid>.<random>.<name>` (the extension stays last, for writers that choose the format
//! by it); a killed writer may leave one behind, which [`is_temp_file`] recognizes and
//! [`remove_dead_temp_files`] removes once its owner is provably gone, never while the owner
//! may still rename it into place. Errors name the file.
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Files that belong together and are written one after the other (a checkpoint's weights,
/// optimizer state and sidecar): a process that stops on request (`gfa run` on SIGTERM) waits
/// for a group in progress ([`stop_groups`]), so that it never leaves half of one.
static GROUPS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held while a group of files is written (see [`GROUPS`]); blocks once [`stop_groups`] ran.
pub fn write_group() -> std::sync::RwLockReadGuard<'static, ()> {
    GROUPS.read().unwrap_or_else(|p| p.into_inner())
}

/// Wait for the groups being written to finish and start no other while the guard lives (a
/// stopping process keeps it until it exits).
pub fn stop_groups() -> std::sync::RwLockWriteGuard<'static, ()> {
    GROUPS.write().unwrap_or_else(|p| p.into_inner())
}

/// Write `bytes` to `path` atomically and durably (see the module documentation). The folder
/// is created when missing.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)
    })
}

/// As [`write_atomic`], for writers that produce the file themselves (libtorch's safetensors
/// writer, the plot backends): `write` writes the temporary path it is given.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    let dir = folder_of(path);
    let tmp = temp_path(path);
    let result = fs::create_dir_all(&dir)
        .and_then(|()| write(&tmp))
        .and_then(|()| File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
        .and_then(|()| sync_dir(&dir))
        .map_err(|e| io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Flush a folder's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `name` is a temporary file of [`write_atomic`].
pub fn is_temp_file(name: &str) -> bool {
    name.starts_with(".tmp.")
}

/// The process id that owns the temporary file `name`, when `name` is one.
pub fn temp_owner(name: &str) -> Option<u32> {
    name.strip_prefix(".tmp.")?.split('.').next()?.parse().ok()
}

/// Whether process `pid` has provably exited: it is not this process and the process table
/// (`/proc` on Linux) has no entry for it. Where there is no `/proc`, nothing is provable and
/// the answer is `false`.
pub fn owner_is_dead(pid: u32) -> bool {
    let proc = Path::new("/proc");
    pid != std::process::id() && proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// Remove the temporary files in `dir` whose owner has exited (a writer killed mid-write);
/// those of live processes, this one included, are left to their owners.
pub fn remove_dead_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if is_temp_file(&name) && temp_owner(&name).is_some_and(owner_is_dead) {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary name next to `path`, named by its owner: this process's id and a random token
/// (a fresh draw of the standard library's per-process random hash keys, mixed with a counter),
/// unique within this process and among processes.
fn temp_path(path: &Path) -> PathBuf {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    folder_of(path).join(format!(".tmp.{}.{:016x}.{name}", std::process::id(), h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub").join("x.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_writer_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        write_atomic(&p, b"old").unwrap();
        let e = write_atomic_with(&p, |tmp| {
            fs::write(tmp, b"half")?;
            Err(io::Error::other("disk full"))
        });
        assert!(e.is_err());
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A reader polling the file while it is rewritten with alternating contents sees one of
    /// the complete contents every time, never an empty or partial file. (A plain
    /// `fs::write` fails this: it truncates first, and the reader catches the file short.)
    #[test]
    fn a_reader_never_sees_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.bin");
        let a = vec![b'a'; 1 << 20];
        let b = vec![b'b'; (1 << 20) + 7];
        write_atomic(&p, &a).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) || reads < 50 {
                    let got = fs::read(&p).unwrap();
                    assert!(got == a || got == b, "read {} bytes of a partial file", got.len());
                    reads += 1;
                }
                reads
            });
            for i in 0..40 {
                write_atomic(&p, if i % 2 == 0 { &b } else { &a }).unwrap();
            }
            done.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() >= 50);
        });
        assert!(
            !fs::read_dir(dir.path())
                .unwrap()
                .any(|e| { is_temp_file(&e.unwrap().file_name().to_string_lossy()) })
        );
    }

    #[test]
    fn temporary_names_are_recognized_and_keep_the_extension() {
        let t = temp_path(Path::new("d/f1.png"));
        assert!(is_temp_file(&t.file_name().unwrap().to_string_lossy()));
        assert_eq!(t.extension().unwrap(), "png");
        assert!(!is_temp_file("train.csv") && !is_temp_file(".hidden"));
    }

    #[test]
    fn only_the_temporary_files_of_exited_owners_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mine = temp_path(&dir.path().join("a.csv"));
        assert_eq!(
            temp_owner(&mine.file_name().unwrap().to_string_lossy()),
            Some(std::process::id())
        );
        fs::write(&mine, b"mine").unwrap();
        // A process that has exited: a child that ran and was waited for.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let dead = dir.path().join(format!(".tmp.{gone}.00ff.b.csv"));
        fs::write(&dead, b"dead").unwrap();
        remove_dead_temp_files(dir.path());
        assert!(mine.exists(), "a live owner's temporary file was removed");
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists(), "an exited owner's temporary file was kept");
        }
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let e = write_atomic(&blocker.join("x.csv"), b"1").unwrap_err().to_string();
        assert!(e.contains("x.csv"), "{e}");
    }
}
