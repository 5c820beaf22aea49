//! `fetch_cifar10` against a loopback HTTP server serving hand-made archives.
use std::path::Path;
use std::thread::JoinHandle;

use gfa_data::DataError;
use gfa_data::cifar10::{self, TEST_FILE};

use super::common::{CLASSES, archive_bytes, layout, md5_hex, serve_routes};

/// Serves `status` + `body` (announcing `content_length`) at every path, to at most
/// `max_conns` connections.
fn serve(
    status: &'static str,
    body: Vec<u8>,
    content_length: usize,
    max_conns: usize,
) -> (String, JoinHandle<()>) {
    let (base, handle) =
        serve_routes(vec![(String::new(), status, body, content_length)], max_conns);
    (format!("{base}cifar-10-binary.tar.gz"), handle)
}

/// Names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn good_archive_is_installed_and_loads() {
    let archive = archive_bytes(&layout(3));
    let md5 = md5_hex(&archive);
    let (url, server) = serve("200 OK", archive.clone(), archive.len(), 1);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("data");
    let mut calls = Vec::new();
    let got = gfa_data::fetch_cifar10(&url, &md5.to_uppercase(), &dest, |done, total| {
        calls.push((done, total))
    })
    .unwrap();
    server.join().unwrap();
    assert_eq!(got, dest);
    let s = cifar10::load_dir(&dest).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (15, 3));
    assert_eq!(s.train.classes, CLASSES);
    // Only the destination is left in the parent: the download and staging folder are gone.
    assert_eq!(entries(tmp.path()), ["data"]);
    let mut want: Vec<String> = cifar10::TRAIN_FILES.iter().map(|s| s.to_string()).collect();
    want.extend([TEST_FILE.to_string(), "batches.meta.txt".to_string()]);
    want.sort();
    assert_eq!(entries(&dest), want);
    // Progress starts at 0, ends at the full size, and never goes back.
    let total = archive.len() as u64;
    assert_eq!(calls.first(), Some(&(0, Some(total))));
    assert_eq!(calls.last(), Some(&(total, Some(total))));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
    // An existing, non-empty destination is refused before any network use.
    match gfa_data::fetch_cifar10("http://127.0.0.1:9/unused", &md5, &dest, |_, _| {}) {
        Err(DataError::DestinationExists { path }) => assert_eq!(path, dest),
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_download_fails_md5_and_leaves_nothing() {
    let archive = archive_bytes(&layout(3));
    let md5 = md5_hex(&archive);
    let mut corrupt = archive.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let (url, server) = serve("200 OK", corrupt.clone(), corrupt.len(), 1);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("data");
    let err = gfa_data::fetch_cifar10(&url, &md5, &dest, |_, _| {}).unwrap_err();
    server.join().unwrap();
    match &err {
        DataError::Md5Mismatch { url: u, expected, got } => {
            assert_eq!(u, &url);
            assert_eq!(expected, &md5);
            assert_eq!(got, &md5_hex(&corrupt));
        }
        e => panic!("{e:?}"),
    }
    assert!(!dest.exists());
    assert!(entries(tmp.path()).is_empty(), "left behind: {:?}", entries(tmp.path()));
}

#[test]
fn http_errors_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("data");
    let (url, server) = serve("404 Not Found", b"gone".to_vec(), 4, 1);
    match gfa_data::fetch_cifar10(&url, "00", &dest, |_, _| {}) {
        Err(DataError::Http { url: u, reason }) => {
            assert_eq!(u, url);
            assert!(reason.contains("404"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    server.join().unwrap();
    // A body shorter than its Content-Length is a failed download, not a short archive.
    let archive = archive_bytes(&layout(3));
    let (url, server) = serve("200 OK", archive[..100].to_vec(), archive.len(), 1);
    let err = gfa_data::fetch_cifar10(&url, &md5_hex(&archive), &dest, |_, _| {}).unwrap_err();
    server.join().unwrap();
    assert!(matches!(err, DataError::Http { .. }), "{err:?}");
    assert!(entries(tmp.path()).is_empty(), "left behind: {:?}", entries(tmp.path()));
}

#[test]
fn archive_with_matching_md5_but_bad_content_leaves_nothing() {
    let files: Vec<_> = layout(3).into_iter().filter(|(n, _)| *n != TEST_FILE).collect();
    let archive = archive_bytes(&files);
    let (url, server) = serve("200 OK", archive.clone(), archive.len(), 1);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("data");
    let err = gfa_data::fetch_cifar10(&url, &md5_hex(&archive), &dest, |_, _| {}).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(&err, DataError::MissingArchiveEntry { entry, .. } if entry == TEST_FILE),
        "{err:?}"
    );
    assert!(entries(tmp.path()).is_empty(), "left behind: {:?}", entries(tmp.path()));
}
