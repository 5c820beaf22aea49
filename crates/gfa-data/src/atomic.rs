//! The one way gfa writes a file: all of it or none of it, also across a power failure.
//!
//! [`write_atomic`] writes to a temporary file in the destination's folder, flushes it to disk
//! (`fsync`), renames it over the destination and then flushes the folder, so that the rename
//! itself is on disk. A reader (or a process started after a crash) sees the old file or the
//! new one, never a prefix of either. Errors name the file.
//!
//! Temporary files are named by their owner: `.tmp.<pid>.<host>.<random>.<name>` (the
//! process id, a hash of the host name, 64 random bits, and the destination's name last, so
//! the extension stays last for writers that choose the format by it). A killed writer may
//! leave one behind; [`is_temp_file`] recognizes it, and [`is_stale_temp_file`] says whether
//! its owner is provably dead (a process of this host that no longer exists), the only case in
//! which anyone but the owner may remove it. Two processes sharing a folder (two `gfa run` on
//! one grid, or nodes of a cluster on a shared file system) therefore never delete each other's
//! files in flight.
use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The owner of a temporary file: its process id and the hash of its host's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempOwner {
    pub pid: u32,
    pub host: u32,
}

impl TempOwner {
    /// This process.
    pub fn me() -> Self {
        Self { pid: std::process::id(), host: host_hash() }
    }

    /// Provably dead: a process of this host (the id means nothing on another one) that is not
    /// this process and does not exist. A live process, a process of another user, or any
    /// process of another host is presumed alive.
    pub fn is_dead(&self) -> bool {
        if self.host != host_hash() || self.pid == std::process::id() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else { return false };
        // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH);
        !alive
    }
}

/// The owner named by a temporary file's name (`None` for other names, including those of the
/// older `.tmp.<pid>.<n>.<name>` form, which are never removed).
pub fn temp_owner(name: &str) -> Option<TempOwner> {
    let rest = name.strip_prefix(".tmp.")?;
    let mut parts = rest.splitn(4, '.');
    let pid = parts.next()?.parse().ok()?;
    let host = parts.next().filter(|h| h.len() == 8)?;
    let host = u32::from_str_radix(host, 16).ok()?;
    let random = parts.next().filter(|r| r.len() == 16)?;
    u64::from_str_radix(random, 16).ok()?;
    parts.next()?;
    Some(TempOwner { pid, host })
}

/// Whether `name` is a temporary file whose writer is provably dead (see
/// [`TempOwner::is_dead`]); only such a file may be removed by another process.
pub fn is_stale_temp_file(name: &str) -> bool {
    temp_owner(name).is_some_and(|o| o.is_dead())
}

/// Remove the temporary files in `dir` whose writers are provably dead; returns how many. Files
/// of live writers, of other hosts and of unknown form stay.
pub fn remove_stale_temp_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| is_stale_temp_file(&e.file_name().to_string_lossy()))
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// A 32-bit hash of this host's name (stable across processes and runs).
fn host_hash() -> u32 {
    static HASH: OnceLock<u32> = OnceLock::new();
    *HASH.get_or_init(|| {
        let name = fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_default();
        let digest = blake3::hash(name.trim().as_bytes());
        u32::from_le_bytes(digest.as_bytes()[..4].try_into().expect("4 bytes"))
    })
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary name next to `path` naming its owner (this process on this host) and 64 random
/// bits, unique within this process and among processes. The bits come from the operating
/// system's randomness through std's `RandomState` (they name a file; they never reach a
/// result, so they need no seed).
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = KEYS.get_or_init(RandomState::new).hash_one(n);
    let me = TempOwner::me();
    folder_of(path).join(format!(".tmp.{}.{:08x}.{random:016x}.{name}", me.pid, me.host))
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
    fn temporary_names_name_their_owner() {
        let t = temp_path(Path::new("d/train.csv"));
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(temp_owner(&name), Some(TempOwner::me()));
        assert!(name.ends_with(".train.csv"), "{name}");
        // Two names for one destination differ (the random part).
        assert_ne!(t, temp_path(Path::new("d/train.csv")));
        // Our own files are never stale; other forms are never removed.
        assert!(!is_stale_temp_file(&name));
        assert_eq!(temp_owner(".tmp.123.4.train.csv"), None);
        assert_eq!(temp_owner("train.csv"), None);
    }

    /// A temporary file of a live process (this one, a child) or of another host stays; one of
    /// an exited process of this host goes.
    #[test]
    fn only_provably_dead_owners_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let live = child.id();
        let mut dead_child = std::process::Command::new("true").spawn().unwrap();
        let dead = dead_child.id();
        dead_child.wait().unwrap();
        let host = TempOwner::me().host;
        let name = |pid: u32, host: u32| format!(".tmp.{pid}.{host:08x}.{:016x}.x.csv", 7u64);
        let files = [
            (name(std::process::id(), host), true),
            (name(live, host), true),
            (name(dead, host.wrapping_add(1)), true),
            (name(dead, host), false),
            (".tmp.1.2.x.csv".to_string(), true),
        ];
        for (f, _) in &files {
            fs::write(dir.path().join(f), b"partial").unwrap();
        }
        assert_eq!(remove_stale_temp_files(dir.path()), 1);
        for (f, stays) in &files {
            assert_eq!(dir.path().join(f).exists(), *stays, "{f}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Once the live process is gone, its file is stale too.
        assert!(is_stale_temp_file(&name(live, host)));
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
