//! Fashion-MNIST: the IDX reader on a synthetic copy (packed and unpacked), one test per
//! malformed input, and `fetch_fashion_mnist` against a loopback server.
use std::io::Read;
use std::path::Path;

use gfa_data::DataError;
use gfa_data::fashion::{self, CLASSES, FILES};
use tch::Kind;

use super::common::{md5_hex, serve_routes};
use super::fetch::entries;

/// A synthetic copy of `n_train` / `n_test` images in `dir` (`.gz` files).
fn copy(dir: &Path, n_train: usize, n_test: usize) {
    fashion::write_synthetic(dir, n_train, n_test, 5).unwrap();
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn synthetic_copy_reads_back_packed_and_unpacked() {
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path(), 30, 12);
    let s = fashion::load_dir(tmp.path()).unwrap();
    assert_eq!(s.train.images.size(), [30, 1, 28, 28]);
    assert_eq!((s.train.images.kind(), s.test.labels.kind()), (Kind::Uint8, Kind::Int64));
    assert_eq!(s.test.len(), 12);
    assert_eq!(s.train.classes, CLASSES);
    assert_eq!(s.train.class_counts(), [3; 10]);
    // The pixels are the generator's, in IDX row-major order.
    let want = gfa_data::synthetic_shaped(30, 12, 5, 1, 28);
    assert!(s.train.images.equal(&want.train.images) && s.test.labels.equal(&want.test.labels));

    // Unpacked files read the same; the image file's bytes are the 16-byte header + pixels.
    let raw = tempfile::tempdir().unwrap();
    for name in FILES {
        let bytes = gunzip(&tmp.path().join(format!("{name}.gz")));
        std::fs::write(raw.path().join(name), bytes).unwrap();
    }
    let header = std::fs::read(raw.path().join(FILES[0])).unwrap();
    assert_eq!(&header[..16], &[0, 0, 8, 3, 0, 0, 0, 30, 0, 0, 0, 28, 0, 0, 0, 28]);
    let r = fashion::load_dir(raw.path()).unwrap();
    assert!(r.train.images.equal(&s.train.images) && r.test.labels.equal(&s.test.labels));

    // The folder, or its parent holding fashion-mnist/, resolves; an empty one does not.
    let parent = tempfile::tempdir().unwrap();
    std::fs::rename(raw.path(), parent.path().join("fashion-mnist")).unwrap();
    let got = fashion::resolve_dir_from(Some(parent.path()), None).unwrap();
    assert_eq!(got, parent.path().join("fashion-mnist"));
    let empty = tempfile::tempdir().unwrap();
    match fashion::resolve_dir_from(None, Some(empty.path().into())) {
        Err(e @ DataError::FashionNotFound { origin: "GFA_FASHION_MNIST_DIR", .. }) => {
            assert!(e.to_string().contains("gfa data fetch fashion-mnist"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// Loads a synthetic copy after `edit` changed its unpacked files.
fn load_edited(edit: impl FnOnce(&Path)) -> gfa_data::Result<gfa_data::Splits> {
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path(), 20, 10);
    for name in FILES {
        let gz = tmp.path().join(format!("{name}.gz"));
        std::fs::write(tmp.path().join(name), gunzip(&gz)).unwrap();
        std::fs::remove_file(gz).unwrap();
    }
    edit(tmp.path());
    fashion::load_dir(tmp.path())
}

#[test]
fn each_malformed_input_has_its_own_error() {
    let rewrite = |d: &Path, name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = std::fs::read(d.join(name)).unwrap();
        f(&mut b);
        std::fs::write(d.join(name), b).unwrap();
    };
    match load_edited(|d| std::fs::remove_file(d.join(FILES[3])).unwrap()) {
        Err(DataError::FashionMissingFile { path }) => assert!(path.ends_with(FILES[3])),
        other => panic!("{other:?}"),
    }
    // Truncated image file: the header's count no longer matches the bytes.
    match load_edited(|d| rewrite(d, FILES[0], &|b| b.truncate(b.len() - 28))) {
        Err(DataError::BadIdx { path, reason }) => {
            assert!(path.ends_with(FILES[0]) && reason.contains("truncated"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Labels in an image file's place: the dimension count is wrong.
    match load_edited(|d| {
        std::fs::copy(d.join(FILES[1]), d.join(FILES[0])).unwrap();
    }) {
        Err(DataError::BadIdx { reason, .. }) => {
            assert!(reason.contains("1 dimensions"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A CIFAR batch or any other file: not an IDX magic number.
    match load_edited(|d| rewrite(d, FILES[2], &|b| b[0] = 0x1a)) {
        Err(DataError::BadIdx { reason, .. }) => assert!(reason.contains("magic"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // One label too many (header and bytes agree, but images and labels do not).
    match load_edited(|d| {
        rewrite(d, FILES[3], &|b| {
            b[7] += 1;
            b.push(0);
        })
    }) {
        Err(DataError::IdxCountMismatch { n_images: 10, n_labels: 11, .. }) => {}
        other => panic!("{other:?}"),
    }
    match load_edited(|d| rewrite(d, FILES[1], &|b| b[8 + 4] = 10)) {
        Err(DataError::IdxLabelOutOfRange { record: 4, value: 10, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A damaged .gz is a gzip error, not garbage pixels.
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path(), 20, 10);
    let gz = tmp.path().join(format!("{}.gz", FILES[0]));
    let mut b = std::fs::read(&gz).unwrap();
    let n = b.len();
    b[n - 6] ^= 0xff; // inside the CRC-32 trailer
    std::fs::write(&gz, b).unwrap();
    match fashion::load_dir(tmp.path()) {
        Err(DataError::BadIdx { reason, .. }) => assert!(reason.contains("gzip"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// The four `.gz` files of a synthetic copy and their MD5 digests.
fn official_like_files() -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    copy(tmp.path(), 20, 10);
    let files: Vec<(String, Vec<u8>)> = FILES
        .iter()
        .map(|n| {
            let f = format!("{n}.gz");
            let b = std::fs::read(tmp.path().join(&f)).unwrap();
            (f, b)
        })
        .collect();
    let md5s = files.iter().map(|(_, b)| md5_hex(b)).collect();
    (files, md5s)
}

#[test]
fn fetch_installs_the_four_checked_files() {
    let (files, md5s) = official_like_files();
    let routes = files.iter().map(|(f, b)| (f.clone(), "200 OK", b.clone(), b.len())).collect();
    let (base, server) = serve_routes(routes, 4);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("fashion-mnist");
    let md5: [&str; 4] = std::array::from_fn(|i| md5s[i].as_str());
    let mut seen = Vec::new();
    let got = gfa_data::fetch_fashion_mnist(&base, &md5, &dest, |f, done, total| {
        if done == 0 {
            seen.push((f.to_string(), total));
        }
    })
    .unwrap();
    server.join().unwrap();
    assert_eq!(got, dest);
    let names: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
    assert_eq!(seen.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(), names);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(entries(&dest), sorted);
    assert_eq!(entries(tmp.path()), ["fashion-mnist"], "temporaries left behind");
    let s = fashion::load_dir(&dest).unwrap();
    assert_eq!((s.train.len(), s.test.len()), (20, 10));
    // The installed files are the downloaded bytes.
    for (f, b) in &files {
        assert_eq!(&std::fs::read(dest.join(f)).unwrap(), b);
    }
}

#[test]
fn fetch_with_a_wrong_checksum_keeps_nothing() {
    let (files, md5s) = official_like_files();
    // The third file arrives damaged: its digest differs from the published one.
    let mut routes: Vec<_> =
        files.iter().map(|(f, b)| (f.clone(), "200 OK", b.clone(), b.len())).collect();
    routes[2].2[20] ^= 0xff;
    let (base, server) = serve_routes(routes, 3);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("fashion-mnist");
    let md5: [&str; 4] = std::array::from_fn(|i| md5s[i].as_str());
    let err = gfa_data::fetch_fashion_mnist(&base, &md5, &dest, |_, _, _| {}).unwrap_err();
    server.join().unwrap();
    match &err {
        DataError::Md5Mismatch { url, expected, .. } => {
            assert!(url.ends_with(&files[2].0), "{url}");
            assert_eq!(expected, &md5s[2]);
        }
        e => panic!("{e:?}"),
    }
    assert!(!dest.exists());
    assert!(entries(tmp.path()).is_empty(), "left behind: {:?}", entries(tmp.path()));
}

/// An all-zero image file is refused by name, as for CIFAR-10.
#[test]
fn constant_image_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    gfa_data::fashion::write_synthetic(dir, 20, 10, 5).unwrap();
    let path = dir.join("t10k-images-idx3-ubyte.gz");
    let (dims, data) = gfa_data::idx::read(&path, 3).unwrap();
    std::fs::remove_file(&path).unwrap();
    let plain = dir.join("t10k-images-idx3-ubyte");
    std::fs::write(&plain, gfa_data::idx::encode(&dims, &vec![0; data.len()])).unwrap();
    match gfa_data::fashion::load_dir(dir) {
        Err(e @ gfa_data::DataError::ConstantImages { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(plain.to_str().unwrap()) && msg.contains("is 0"), "{msg}");
            assert!(msg.contains("gfa data fetch fashion-mnist"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
}
