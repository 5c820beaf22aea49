//! Reading the official binary layout: round trip, locations, and one test per malformed input.
use std::path::Path;

use gfa_data::DataError;
use gfa_data::cifar10::{self, PIXEL_BYTES, TEST_FILE, TRAIN_FILES};
use tch::Kind;

use super::common::{CLASSES, archive_bytes, label, layout, pixel, write_files};

/// Checks `d` holds records `ids` of the hand-made copy, pixel by pixel.
fn assert_records(d: &gfa_data::Dataset, ids: std::ops::Range<usize>) {
    let n = ids.len();
    assert_eq!(d.images.size(), [n as i64, 3, 32, 32]);
    assert_eq!(d.images.kind(), Kind::Uint8);
    assert_eq!(d.labels.kind(), Kind::Int64);
    let labels = Vec::<i64>::try_from(&d.labels).unwrap();
    let want: Vec<i64> = ids.clone().map(|id| label(id) as i64).collect();
    assert_eq!(labels, want);
    // The image tensor, flattened in NCHW order, must be each record's pixel bytes in file order.
    let got = Vec::<u8>::try_from(&d.images.contiguous().view([-1])).unwrap();
    let want: Vec<u8> = ids.flat_map(|id| (0..PIXEL_BYTES).map(move |k| pixel(id, k))).collect();
    assert_eq!(got, want);
}

#[test]
fn round_trip_of_hand_made_three_record_files() {
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &layout(3));
    let s = cifar10::load_dir(tmp.path()).unwrap();
    assert_records(&s.train, 0..15);
    assert_records(&s.test, 15..18);
    assert_eq!(s.train.classes, CLASSES);
    assert_eq!(s.test.classes, CLASSES);
    // Record 1 of data_batch_2.bin is train record 4; channel 1 (green), row 2, column 5 is
    // pixel byte 1024 + 2*32 + 5 of that record.
    assert_eq!(s.train.images.int64_value(&[4, 1, 2, 5]), pixel(4, 1024 + 69) as i64);
}

#[test]
fn load_accepts_the_folder_its_parent_and_the_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let files = layout(3);
    let inner = tmp.path().join("cifar-10-batches-bin");
    write_files(&inner, &files);
    let archive = tmp.path().join("elsewhere").join("cifar-10-binary.tar.gz");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    std::fs::write(&archive, archive_bytes(&files)).unwrap();
    for path in
        [&inner, &tmp.path().to_path_buf(), &archive, &archive.parent().unwrap().to_path_buf()]
    {
        let s = gfa_data::load_cifar10(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_records(&s.train, 0..15);
        assert_records(&s.test, 15..18);
        assert_eq!(s.test.classes, CLASSES);
    }
}

#[test]
fn resolve_prefers_cli_then_env_then_default() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    write_files(&a.join("cifar-10-batches-bin"), &layout(1));
    write_files(&b, &layout(1));
    let env = Some(b.clone().into_os_string());
    let r = cifar10::resolve_data_dir_from(Some(&a), env.clone()).unwrap();
    assert_eq!(r, a.join("cifar-10-batches-bin"));
    assert_eq!(cifar10::resolve_data_dir_from(None, env).unwrap(), b);
    // An explicit path that holds no data is an error, not a fall-through to the next source.
    let missing = tmp.path().join("missing");
    match cifar10::resolve_data_dir_from(Some(&missing), Some(b.into_os_string())) {
        Err(DataError::DataNotFound { path, origin }) => {
            assert_eq!(path, missing);
            assert_eq!(origin, "--data");
        }
        other => panic!("expected DataNotFound, got {other:?}"),
    }
    match cifar10::resolve_data_dir_from(None, Some(missing.clone().into_os_string())) {
        Err(e @ DataError::DataNotFound { origin: "GFA_DATA_DIR", .. }) => {
            let msg = e.to_string();
            for needle in [
                "gfa data fetch",
                "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
                "data_batch_1.bin",
                "GFA_DATA_DIR",
                missing.to_str().unwrap(),
            ] {
                assert!(msg.contains(needle), "{needle:?} not in {msg}");
            }
        }
        other => panic!("expected DataNotFound, got {other:?}"),
    }
}

/// Writes the 3-record layout with `edit` applied and loads the folder.
fn load_edited(edit: impl FnOnce(&Path)) -> DataError {
    let tmp = tempfile::tempdir().unwrap();
    write_files(tmp.path(), &layout(3));
    edit(tmp.path());
    let err = cifar10::load_dir(tmp.path()).expect_err("malformed copy must not load");
    // Every message tells how to get a good copy.
    let msg = err.to_string();
    assert!(msg.contains("gfa data fetch"), "no fix in: {msg}");
    err
}

#[test]
fn missing_file() {
    match load_edited(|d| std::fs::remove_file(d.join(TEST_FILE)).unwrap()) {
        DataError::MissingFile { path } => assert!(path.ends_with(TEST_FILE)),
        e => panic!("{e:?}"),
    }
    match load_edited(|d| std::fs::remove_file(d.join("batches.meta.txt")).unwrap()) {
        DataError::MissingFile { path } => assert!(path.ends_with("batches.meta.txt")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn size_not_a_multiple_of_the_record() {
    let err = load_edited(|d| {
        let p = d.join(TRAIN_FILES[2]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.pop();
        std::fs::write(p, bytes).unwrap();
    });
    match &err {
        DataError::BadFileSize { path, len } => {
            assert!(path.ends_with(TRAIN_FILES[2]));
            assert_eq!(*len, 3 * 3073 - 1);
            assert!(err.to_string().contains("3073"));
        }
        e => panic!("{e:?}"),
    }
    match load_edited(|d| std::fs::write(d.join(TEST_FILE), b"").unwrap()) {
        DataError::BadFileSize { path, len: 0 } => assert!(path.ends_with(TEST_FILE)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn record_count_differs_between_batches() {
    let err = load_edited(|d| {
        std::fs::write(d.join(TRAIN_FILES[3]), super::common::batch_bytes(0..2)).unwrap()
    });
    match err {
        DataError::RecordCount { path, expected: 3, got: 2 } => {
            assert!(path.ends_with(TRAIN_FILES[3]))
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn label_out_of_range_names_record_and_value() {
    let err = load_edited(|d| {
        let p = d.join(TRAIN_FILES[1]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[2 * 3073] = 10; // label byte of record 2
        bytes[3073] = 0; // record 1 stays valid
        std::fs::write(p, bytes).unwrap();
    });
    let msg = err.to_string();
    match err {
        DataError::LabelOutOfRange { path, record: 2, value: 10, num_classes: 10 } => {
            assert!(path.ends_with(TRAIN_FILES[1]));
            assert!(msg.contains("record 2") && msg.contains("label 10"), "{msg}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn bad_meta_file() {
    match load_edited(|d| std::fs::write(d.join("batches.meta.txt"), "cat\ndog\n").unwrap()) {
        DataError::BadMeta { path, reason } => {
            assert!(path.ends_with("batches.meta.txt"));
            assert!(reason.contains("2 class names"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
}

/// The archive of the 3-record layout with `edit` applied to its bytes, loaded.
fn load_archive_edited(edit: impl FnOnce(&mut Vec<u8>)) -> DataError {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    let mut bytes = archive_bytes(&layout(3));
    edit(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    let err = cifar10::load_archive(&path).expect_err("bad archive must not load");
    assert!(err.to_string().contains(path.to_str().unwrap()), "path not named: {err}");
    err
}

#[test]
fn archive_reads_like_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&path, archive_bytes(&layout(3))).unwrap();
    let s = cifar10::load_archive(&path).unwrap();
    assert_records(&s.train, 0..15);
    assert_records(&s.test, 15..18);
    assert_eq!(s.train.classes, CLASSES);
}

#[test]
fn truncated_archive() {
    let err = load_archive_edited(|b| b.truncate(b.len() / 2));
    assert!(matches!(err, DataError::CorruptArchive { .. }), "{err:?}");
    // Losing only the gzip trailer (CRC + length) is caught too.
    let err = load_archive_edited(|b| b.truncate(b.len() - 4));
    assert!(matches!(err, DataError::CorruptArchive { .. }), "{err:?}");
}

#[test]
fn corrupt_archive() {
    let err = load_archive_edited(|b| {
        let mid = b.len() / 2;
        for x in &mut b[mid..mid + 64] {
            *x ^= 0x5a;
        }
    });
    assert!(matches!(err, DataError::CorruptArchive { .. }), "{err:?}");
    let err = load_archive_edited(|b| *b = b"not a gzip file".to_vec());
    assert!(matches!(err, DataError::CorruptArchive { .. }), "{err:?}");
}

#[test]
fn archive_without_a_member() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    let files: Vec<_> = layout(3).into_iter().filter(|(n, _)| *n != TEST_FILE).collect();
    std::fs::write(&path, archive_bytes(&files)).unwrap();
    match cifar10::load_archive(&path) {
        Err(DataError::MissingArchiveEntry { archive, entry }) => {
            assert_eq!(archive, path);
            assert_eq!(entry, TEST_FILE);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn archive_with_bad_records_names_the_member() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cifar-10-binary.tar.gz");
    let mut files = layout(3);
    files[0].1[0] = 255;
    std::fs::write(&path, archive_bytes(&files)).unwrap();
    match cifar10::load_archive(&path) {
        Err(DataError::LabelOutOfRange { path: p, record: 0, value: 255, .. }) => {
            assert!(p.ends_with("cifar-10-batches-bin/data_batch_1.bin"), "{}", p.display())
        }
        other => panic!("{other:?}"),
    }
}

/// A `.tar.gz` whose one member `cifar-10-batches-bin/<name>` has a header claiming `claimed`
/// bytes while `data` follows it.
fn archive_claiming(name: &str, claimed: u64, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut header = tar::Header::new_gnu();
    header.set_path(format!("cifar-10-batches-bin/{name}")).unwrap();
    header.set_size(claimed);
    header.set_mode(0o644);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(data);
    raw.resize(raw.len().div_ceil(512) * 512 + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

/// A tar header claiming 2⁶² bytes is refused from the archive's length, before anything is
/// allocated (it used to abort the process with "memory allocation of 4611686018427387904 bytes
/// failed"); a claim the file could hold but whose bytes are not there is a corrupt archive.
#[test]
fn archive_member_claiming_more_than_the_file_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.tar.gz");
    std::fs::write(&path, archive_claiming(TEST_FILE, 1 << 62, &[7; 100])).unwrap();
    match cifar10::load(&path) {
        Err(e @ DataError::CorruptArchive { .. }) => {
            let msg = e.to_string();
            for needle in [path.to_str().unwrap(), "test_batch.bin", "4611686018427387904"] {
                assert!(msg.contains(needle), "{needle:?} not in: {msg}");
            }
            assert!(msg.contains("gfa data fetch"), "no fix in: {msg}");
        }
        other => panic!("{other:?}"),
    }
    // Within the deflate bound but past the end of the stream.
    std::fs::write(&path, archive_claiming(TEST_FILE, 50_000, &[7; 100])).unwrap();
    assert!(matches!(cifar10::load(&path), Err(DataError::CorruptArchive { .. })));
}

#[test]
fn member_size_bound_is_the_deflate_ratio() {
    let p = Path::new("a.tar.gz");
    assert!(cifar10::check_member_size(p, TEST_FILE, 1032 * 1000, 1000).is_ok());
    assert!(cifar10::check_member_size(p, TEST_FILE, 1032 * 1000 + 1, 1000).is_err());
    assert!(cifar10::check_member_size(p, TEST_FILE, u64::MAX, u64::MAX).is_ok());
}

/// An all-zero (or any constant) batch file is refused by name: training on it used to report
/// 0.0 with no word.
#[test]
fn constant_batch_file_is_named() {
    for (file, value) in [(TEST_FILE, 0u8), (TRAIN_FILES[4], 128)] {
        let err = load_edited(|d| {
            let mut bytes = super::common::batch_bytes(0..3);
            for r in 0..3 {
                bytes[r * 3073 + 1..(r + 1) * 3073].fill(value);
            }
            std::fs::write(d.join(file), bytes).unwrap();
        });
        let msg = err.to_string();
        match err {
            DataError::ConstantImages { path, records: 3, value: v, .. } => {
                assert!(path.ends_with(file), "{}", path.display());
                assert_eq!(v, value);
                assert!(msg.contains(&format!("is {value}")), "{msg}");
            }
            e => panic!("{e:?}"),
        }
    }
}

/// Property: whatever bytes a damaged archive or batch file holds (random flips, truncations,
/// rewritten tar size fields), loading returns a value or an error naming the file; it never
/// panics or aborts. 300 seeded cases.
#[test]
fn damaged_copies_never_panic() {
    use rand::Rng;
    let mut rng = gfa_data::rng_for(24, "damaged-cifar-copies");
    let tmp = tempfile::tempdir().unwrap();
    let good = archive_bytes(&layout(2));
    for case in 0..300 {
        let path = tmp.path().join(format!("c{case}.tar.gz"));
        let bytes = match case % 3 {
            // The gzip stream with bytes flipped.
            0 => {
                let mut b = good.clone();
                for _ in 0..rng.gen_range(1..8) {
                    let i = rng.gen_range(0..b.len());
                    b[i] ^= rng.gen_range(1..=255u8);
                }
                b
            }
            // Truncated anywhere.
            1 => good[..rng.gen_range(0..good.len())].to_vec(),
            // A member whose header claims any size, its data any length.
            _ => {
                let claimed = match rng.gen_range(0..3) {
                    0 => rng.gen_range(0..20_000),
                    1 => rng.r#gen::<u64>() >> rng.gen_range(0..64),
                    _ => u64::MAX,
                };
                let data = vec![rng.r#gen::<u8>() % 10; rng.gen_range(0..10_000)];
                archive_claiming(TRAIN_FILES[0], claimed, &data)
            }
        };
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = cifar10::load(&path) {
            assert!(e.to_string().contains(path.to_str().unwrap()), "case {case}: {e}");
        }
    }
}
