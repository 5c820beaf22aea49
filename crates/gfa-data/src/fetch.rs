//! Downloading CIFAR-10 and Fashion-MNIST (`gfa data fetch`), all or nothing.
//!
//! Each file is streamed to a temporary place next to the destination while its MD5 is
//! computed and checked against the published digest; the copy is then unpacked (CIFAR-10's
//! archive) into a temporary folder (each file written with
//! [`crate::atomic::write_atomic`]), loaded once as a check, and only then renamed into place.
//! Any failure (network, HTTP status, short body, MD5, corrupt archive, bad records) removes the
//! temporaries and leaves no destination behind.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::cifar10::{self, OFFICIAL_MD5, OFFICIAL_URL};
use crate::error::{DataError, Result};
use crate::fashion;

/// Downloads the official CIFAR-10 binary archive into `dest_dir` (see [`fetch_cifar10`]).
pub fn fetch_official(dest_dir: &Path, progress: impl FnMut(u64, Option<u64>)) -> Result<PathBuf> {
    fetch_cifar10(OFFICIAL_URL, OFFICIAL_MD5, dest_dir, progress)
}

/// Downloads a `cifar-10-binary.tar.gz` from `url`, checks its MD5 (hex, any case), and
/// installs its `cifar-10-batches-bin/` files directly in `dest_dir`, so that
/// `dest_dir/data_batch_1.bin` exists. Returns `dest_dir`.
///
/// `progress(bytes_so_far, total)` is called as the download proceeds (`total` from
/// `Content-Length`, when the server sends it).
///
/// `dest_dir` must not exist or be an empty folder; its parent is created if needed and holds
/// the temporaries, so the final rename stays on one file system.
pub fn fetch_cifar10(
    url: &str,
    expected_md5: &str,
    dest_dir: &Path,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<PathBuf> {
    let parent = prepare(dest_dir)?;

    // 1. Download to a temporary file (removed on drop), hashing as we go.
    let mut download = tempfile::Builder::new()
        .prefix(".cifar10-download-")
        .suffix(".tar.gz")
        .tempfile_in(&parent)
        .map_err(|e| io_err(&parent, e))?;
    let download_path = download.path().to_path_buf();
    download_checked(url, expected_md5, download.as_file_mut(), &download_path, &mut progress)?;

    // 2. Unpack the layout's files to a temporary folder (removed on drop) and check it loads.
    let staging = tempfile::Builder::new()
        .prefix(".cifar10-unpack-")
        .tempdir_in(&parent)
        .map_err(|e| io_err(&parent, e))?;
    let mut members = cifar10::read_archive_members(&download_path)?;
    for name in cifar10::layout_files() {
        let bytes = members.remove(name).ok_or_else(|| DataError::MissingArchiveEntry {
            archive: PathBuf::from(url),
            entry: name.to_string(),
        })?;
        let path = staging.path().join(name);
        crate::atomic::write_atomic(&path, &bytes).map_err(|e| io_err(&path, e))?;
    }
    drop(members);
    cifar10::load_dir(staging.path())?;
    install(staging, dest_dir)
}

/// Downloads the four official Fashion-MNIST files into `dest_dir` (see
/// [`fetch_fashion_mnist`]).
pub fn fetch_official_fashion_mnist(
    dest_dir: &Path,
    progress: impl FnMut(&str, u64, Option<u64>),
) -> Result<PathBuf> {
    fetch_fashion_mnist(fashion::OFFICIAL_BASE_URL, &fashion::OFFICIAL_MD5, dest_dir, progress)
}

/// Downloads `<base_url><file>.gz` for the four Fashion-MNIST files ([`fashion::FILES`]), checks
/// each against its MD5 in `expected_md5` (same order; hex, any case), loads them once as a
/// check and installs them in `dest_dir` as they were downloaded (`.gz`). Returns `dest_dir`.
///
/// `progress(file, bytes_so_far, total)` is called as each file downloads. `dest_dir` must not
/// exist or be an empty folder; a failure at any file leaves nothing behind.
pub fn fetch_fashion_mnist(
    base_url: &str,
    expected_md5: &[&str; 4],
    dest_dir: &Path,
    mut progress: impl FnMut(&str, u64, Option<u64>),
) -> Result<PathBuf> {
    let parent = prepare(dest_dir)?;
    let staging = tempfile::Builder::new()
        .prefix(".fashion-mnist-download-")
        .tempdir_in(&parent)
        .map_err(|e| io_err(&parent, e))?;
    for (name, md5) in fashion::FILES.iter().zip(expected_md5) {
        let file = format!("{name}.gz");
        let url = format!("{base_url}{file}");
        let path = staging.path().join(&file);
        let mut f = std::fs::File::create(&path).map_err(|e| io_err(&path, e))?;
        download_checked(&url, md5, &mut f, &path, &mut |done, total| {
            progress(&file, done, total)
        })?;
        f.sync_all().map_err(|e| io_err(&path, e))?;
    }
    fashion::load_dir(staging.path())?;
    install(staging, dest_dir)
}

/// Checks `dest_dir` is free (absent or an empty folder) and creates its parent, where the
/// temporaries go so that the final rename stays on one file system; returns the parent.
fn prepare(dest_dir: &Path) -> Result<PathBuf> {
    if is_nonempty_dir(dest_dir) || dest_dir.is_file() {
        return Err(DataError::DestinationExists { path: dest_dir.to_path_buf() });
    }
    let parent = match dest_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    Ok(parent)
}

/// Moves the staged folder into place. rename(2) replaces an empty folder atomically; a
/// non-empty one that appeared meanwhile makes it fail, and the staging folder is then removed.
fn install(staging: tempfile::TempDir, dest_dir: &Path) -> Result<PathBuf> {
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, dest_dir) {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(if is_nonempty_dir(dest_dir) {
            DataError::DestinationExists { path: dest_dir.to_path_buf() }
        } else {
            io_err(dest_dir, e)
        });
    }
    // The rename is durable once the folder holding `dest_dir` is synced.
    let parent = match dest_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    crate::atomic::sync_dir(parent).map_err(|e| io_err(parent, e))?;
    Ok(dest_dir.to_path_buf())
}

/// Streams `url` into `file` and checks the MD5 of what arrived against `expected_md5`.
fn download_checked(
    url: &str,
    expected_md5: &str,
    file: &mut std::fs::File,
    path: &Path,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<()> {
    let got = download_to(url, file, path, progress)?;
    if !got.eq_ignore_ascii_case(expected_md5.trim()) {
        return Err(DataError::Md5Mismatch {
            url: url.to_string(),
            expected: expected_md5.trim().to_ascii_lowercase(),
            got,
        });
    }
    Ok(())
}

fn is_nonempty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).map(|mut d| d.next().is_some()).unwrap_or(false)
}

fn io_err(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io { path: path.to_path_buf(), source }
}

/// Streams `url` into `file`, returning the lowercase hex MD5 of the body.
fn download_to(
    url: &str,
    file: &mut std::fs::File,
    path: &Path,
    progress: &mut impl FnMut(u64, Option<u64>),
) -> Result<String> {
    let http = |reason: String| DataError::Http { url: url.to_string(), reason };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => http(format!("HTTP {code} {}", r.status_text())),
        ureq::Error::Transport(t) => http(t.to_string()),
    })?;
    let total = response.header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = response.into_reader();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut done = 0u64;
    progress(0, total);
    loop {
        let k = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(http(format!("connection broke after {done} bytes: {e}"))),
        };
        md5.update(&buf[..k]);
        file.write_all(&buf[..k]).map_err(|e| io_err(path, e))?;
        done += k as u64;
        progress(done, total);
    }
    if let Some(t) = total
        && t != done
    {
        return Err(http(format!("the body ended after {done} of {t} bytes")));
    }
    file.flush().map_err(|e| io_err(path, e))?;
    Ok(hex(&md5.finalize()))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
