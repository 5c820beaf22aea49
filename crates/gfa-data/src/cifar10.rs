//! CIFAR-10 in the official binary layout (Krizhevsky, "Learning Multiple Layers of Features
//! from Tiny Images", 2009; <https://www.cs.toronto.edu/~kriz/cifar.html>).
//!
//! The "CIFAR-10 binary version" (`cifar-10-binary.tar.gz`) unpacks to `cifar-10-batches-bin/`
//! with `data_batch_1.bin` … `data_batch_5.bin` (train, 10,000 records each), `test_batch.bin`
//! (10,000 records) and `batches.meta.txt` (the 10 class names in label order, one a line).
//! A record is 3,073 bytes: the label byte (0–9), then 1,024 red, 1,024 green and 1,024 blue
//! bytes, each plane row-major 32×32. That is exactly NCHW `u8`, so a file becomes a dataset
//! with one bulk read and two tensor slices; there is no per-record loop.
//!
//! [`load`] takes the folder itself, its parent, or the `.tar.gz` (read as a stream with
//! flate2 + tar, never unpacked to disk). [`resolve_data_dir`] picks the location from
//! `--data`, then `GFA_DATA_DIR`, then `./data`.
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use tch::{Kind, Tensor};

use crate::dataset::{Dataset, Splits};
use crate::error::{DataError, REFETCH_HINT, Result};

/// Bytes per record: 1 label byte + 3 × 32 × 32 pixel bytes.
pub const RECORD_BYTES: usize = 1 + PIXEL_BYTES;
/// Pixel bytes per record.
pub const PIXEL_BYTES: usize = 3 * 32 * 32;
/// Number of classes (labels are `0..NUM_CLASSES`).
pub const NUM_CLASSES: usize = 10;
/// The train batch files, in the order their records are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test batch file.
pub const TEST_FILE: &str = "test_batch.bin";
/// The class-name file.
pub const META_FILE: &str = "batches.meta.txt";
/// The folder the official archive unpacks to.
pub const BATCHES_DIR: &str = "cifar-10-batches-bin";
/// The official archive's file name.
pub const ARCHIVE_NAME: &str = "cifar-10-binary.tar.gz";
/// The official download.
pub const OFFICIAL_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the official download, as published on the CIFAR-10 page.
pub const OFFICIAL_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The environment variable naming the data location.
pub const DATA_DIR_ENV: &str = "GFA_DATA_DIR";
/// The data location used when neither `--data` nor [`DATA_DIR_ENV`] is given.
pub const DEFAULT_DATA_DIR: &str = "data";

/// Every file of the layout: the train batches, the test batch, the class names.
pub(crate) fn layout_files() -> impl Iterator<Item = &'static str> {
    TRAIN_FILES.into_iter().chain([TEST_FILE, META_FILE])
}

/// Where a CIFAR-10 copy lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder holding `data_batch_1.bin` and the other files directly.
    Dir(PathBuf),
    /// The official `.tar.gz`.
    Archive(PathBuf),
}

impl Location {
    pub fn path(&self) -> &Path {
        match self {
            Location::Dir(p) | Location::Archive(p) => p,
        }
    }
}

/// Finds the copy at `path`: an archive file, a folder holding `data_batch_1.bin`, a folder
/// holding `cifar-10-batches-bin/`, or a folder holding `cifar-10-binary.tar.gz` (in that
/// order). `None` when none of them is there.
pub fn locate(path: &Path) -> Option<Location> {
    if path.is_file() {
        return Some(Location::Archive(path.to_path_buf()));
    }
    if !path.is_dir() {
        return None;
    }
    if path.join(TRAIN_FILES[0]).is_file() {
        return Some(Location::Dir(path.to_path_buf()));
    }
    let inner = path.join(BATCHES_DIR);
    if inner.join(TRAIN_FILES[0]).is_file() {
        return Some(Location::Dir(inner));
    }
    let archive = path.join(ARCHIVE_NAME);
    if archive.is_file() {
        return Some(Location::Archive(archive));
    }
    None
}

/// The CIFAR-10 location to use: `cli` (`--data`) if given, else `$GFA_DATA_DIR`, else
/// `./data`; the first one given is the only one tried. Returns the batches folder (when given
/// its parent, `cifar-10-batches-bin/` inside it) or the archive path.
///
/// The error, [`DataError::DataNotFound`], says where the path came from and how to get the
/// data.
pub fn resolve_data_dir(cli: Option<&Path>) -> Result<PathBuf> {
    resolve_data_dir_from(cli, std::env::var_os(DATA_DIR_ENV))
}

/// [`resolve_data_dir`] with the environment value passed in (tests cannot safely set
/// environment variables while other threads run).
pub fn resolve_data_dir_from(cli: Option<&Path>, env: Option<OsString>) -> Result<PathBuf> {
    let (path, origin) =
        first_given(cli, env, DATA_DIR_ENV, DEFAULT_DATA_DIR, "the default ./data");
    match locate(&path) {
        Some(loc) => Ok(loc.path().to_path_buf()),
        None => {
            // A `data_batch_1.bin` that is a folder is reported as what it is.
            let first = [path.join(TRAIN_FILES[0]), path.join(BATCHES_DIR).join(TRAIN_FILES[0])];
            match first.iter().find_map(|p| DataError::not_a_file(p)) {
                Some(e) => Err(e),
                None => Err(DataError::DataNotFound { path, origin }),
            }
        }
    }
}

/// The first location given: `cli` (`--data`), else the environment variable `env_name`
/// (value `env`, when not empty), else `default`; with where it came from, for messages.
pub(crate) fn first_given(
    cli: Option<&Path>,
    env: Option<OsString>,
    env_name: &'static str,
    default: &str,
    default_origin: &'static str,
) -> (PathBuf, &'static str) {
    match (cli, env) {
        (Some(p), _) => (p.to_path_buf(), "--data"),
        (None, Some(e)) if !e.is_empty() => (PathBuf::from(e), env_name),
        _ => (PathBuf::from(default), default_origin),
    }
}

/// Loads CIFAR-10 from `path`: the batches folder, its parent, or the archive (see [`locate`]).
pub fn load(path: &Path) -> Result<Splits> {
    match locate(path) {
        Some(Location::Dir(dir)) => load_dir(&dir),
        Some(Location::Archive(archive)) => load_archive(&archive),
        // Report the first missing file of the layout, which is the most useful message for a
        // folder that exists but is not a CIFAR-10 copy.
        None if path.is_dir() => Err(DataError::MissingFile { path: path.join(TRAIN_FILES[0]) }),
        None => Err(DataError::DataNotFound { path: path.to_path_buf(), origin: "the given path" }),
    }
}

/// Loads the folder holding `data_batch_1.bin` … `test_batch.bin` and `batches.meta.txt`.
/// One bulk read per file.
pub fn load_dir(dir: &Path) -> Result<Splits> {
    let read = |name: &str| -> Result<(PathBuf, Vec<u8>)> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| DataError::reading(&path, e))?;
        Ok((path, bytes))
    };
    // Check every file is there before reading 180 MB, so a missing file is reported at once.
    for name in layout_files() {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(DataError::not_a_file(&path).unwrap_or(DataError::MissingFile { path }));
        }
    }
    let (meta_path, meta) = read(META_FILE)?;
    let classes = parse_meta(&meta, &meta_path)?;
    let train = TRAIN_FILES.iter().map(|n| read(n)).collect::<Result<Vec<_>>>()?;
    let test = read(TEST_FILE)?;
    assemble(train, test, classes)
}

/// Loads straight from the official `cifar-10-binary.tar.gz`, streamed (nothing is unpacked).
pub fn load_archive(archive: &Path) -> Result<Splits> {
    let mut members = read_archive_members(archive)?;
    let mut take = |name: &str| -> Result<(PathBuf, Vec<u8>)> {
        let bytes = members.remove(name).ok_or_else(|| DataError::MissingArchiveEntry {
            archive: archive.to_path_buf(),
            entry: name.to_string(),
        })?;
        Ok((archive.join(BATCHES_DIR).join(name), bytes))
    };
    let (meta_path, meta) = take(META_FILE)?;
    let classes = parse_meta(&meta, &meta_path)?;
    let train = TRAIN_FILES.iter().map(|n| take(n)).collect::<Result<Vec<_>>>()?;
    let test = take(TEST_FILE)?;
    assemble(train, test, classes)
}

/// Reads the layout's members (keyed by file name) out of a `.tar.gz`, in one streaming pass
/// that also reads to the end of the gzip stream so its CRC is checked.
pub(crate) fn read_archive_members(archive: &Path) -> Result<HashMap<&'static str, Vec<u8>>> {
    let file = File::open(archive).map_err(|e| DataError::reading(archive, e))?;
    let corrupt = |e: std::io::Error| DataError::CorruptArchive {
        path: archive.to_path_buf(),
        reason: e.to_string(),
    };
    let archive_len = file.metadata().map_err(|e| DataError::reading(archive, e))?.len();
    let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut tar = tar::Archive::new(gz);
    let mut members = HashMap::new();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let Some(name) = layout_member(&path) else { continue };
        let claimed = entry.size();
        check_member_size(archive, name, claimed, archive_len)?;
        // The header's size is checked above but not trusted further: the buffer grows with
        // the bytes that are really there, and a stream that ends early is a corrupt archive.
        let mut bytes = Vec::with_capacity(claimed.min(MAX_PREALLOCATION) as usize);
        entry.read_to_end(&mut bytes).map_err(corrupt)?;
        members.insert(name, bytes);
    }
    // The tar reader stops at the end-of-archive blocks; drain the rest of the gzip stream so a
    // corrupt trailer (CRC/length) is not silently accepted.
    let mut rest = tar.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(corrupt)?;
    Ok(members)
}

/// Deflate (RFC 1951) expands at most 1032:1: one 258-byte match costs at least 2 bits.
pub const MAX_DEFLATE_RATIO: u64 = 1032;
/// The most bytes reserved up front for one archive member (the official members are 30 MB).
const MAX_PREALLOCATION: u64 = 64 << 20;

/// An error unless an archive member's header size `claimed` fits in what `archive_len` bytes
/// of gzip can hold, checked before anything is allocated for it.
pub fn check_member_size(archive: &Path, name: &str, claimed: u64, archive_len: u64) -> Result<()> {
    let most = archive_len.saturating_mul(MAX_DEFLATE_RATIO);
    if claimed > most {
        return Err(DataError::CorruptArchive {
            path: archive.to_path_buf(),
            reason: format!(
                "the tar header of {BATCHES_DIR}/{name} claims {claimed} bytes, but a \
                 {archive_len}-byte gzip file holds at most {most} (deflate expands at most \
                 {MAX_DEFLATE_RATIO}×)"
            ),
        });
    }
    Ok(())
}

/// The layout file name of an archive entry `…/cifar-10-batches-bin/<name>`, if it is one.
fn layout_member(path: &Path) -> Option<&'static str> {
    let normal: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    let [.., dir, file] = normal.as_slice() else { return None };
    if *dir != BATCHES_DIR {
        return None;
    }
    layout_files().find(|n| *file == *n)
}

/// Parses `batches.meta.txt`: exactly [`NUM_CLASSES`] distinct non-empty names, one a line
/// (blank lines, which the official file ends with, are skipped).
pub fn parse_meta(bytes: &[u8], path: &Path) -> Result<Vec<String>> {
    let bad = |reason: String| DataError::BadMeta { path: path.to_path_buf(), reason };
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8 text ({e})")))?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.len() != NUM_CLASSES {
        return Err(bad(format!("it has {} class names, expected {NUM_CLASSES}", names.len())));
    }
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(bad(format!("class name {n:?} appears twice")));
        }
    }
    Ok(names)
}

/// Splits one batch file's bytes into images `[n, 3, 32, 32]` `u8` (a strided view into the
/// record tensor) and labels `[n]` `i64`, checking the size and the label range.
///
/// # Shapes
/// `bytes.len() == n * 3073` → images `[n, 3, 32, 32]`, labels `[n]`.
pub fn parse_batch(bytes: &[u8], path: &Path) -> Result<(Tensor, Tensor)> {
    let len = bytes.len();
    if len == 0 || !len.is_multiple_of(RECORD_BYTES) {
        return Err(DataError::BadFileSize { path: path.to_path_buf(), len: len as u64 });
    }
    let n = (len / RECORD_BYTES) as i64;
    let records = Tensor::f_from_data_size(bytes, &[n, RECORD_BYTES as i64], Kind::Uint8)?;
    let labels = records.f_select(1, 0)?.f_to_kind(Kind::Int64)?;
    let bad = labels.f_ge(NUM_CLASSES as i64)?;
    if bad.f_any()?.f_int64_value(&[])? != 0 {
        let first = bad.f_nonzero()?.f_int64_value(&[0, 0])?;
        let value = labels.f_int64_value(&[first])? as u8;
        return Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            record: first as usize,
            value,
            num_classes: NUM_CLASSES,
        });
    }
    // A view (strides [3073, 1024, 32, 1]); the caller's `cat`/`contiguous` makes it dense.
    let images = records.f_narrow(1, 1, PIXEL_BYTES as i64)?.f_view([n, 3, 32, 32])?;
    Ok((images, labels))
}

/// Builds the splits from the raw files, checking all batches hold as many records as the
/// first.
fn assemble(
    train: Vec<(PathBuf, Vec<u8>)>,
    test: (PathBuf, Vec<u8>),
    classes: Vec<String>,
) -> Result<Splits> {
    let mut expected = None;
    let mut parse = |(path, bytes): &(PathBuf, Vec<u8>)| -> Result<(Tensor, Tensor)> {
        let (x, y) = parse_batch(bytes, path)?;
        let got = y.size()[0] as usize;
        if let Some(value) = crate::dataset::constant_pixel(&x)? {
            let fix = REFETCH_HINT;
            return Err(DataError::ConstantImages { path: path.clone(), records: got, value, fix });
        }
        match expected {
            None => expected = Some(got),
            Some(e) if e != got => {
                return Err(DataError::RecordCount { path: path.clone(), expected: e, got });
            }
            Some(_) => {}
        }
        Ok((x, y))
    };
    let (train_x, train_y): (Vec<_>, Vec<_>) =
        train.iter().map(&mut parse).collect::<Result<Vec<_>>>()?.into_iter().unzip();
    let (test_x, test_y) = parse(&test)?;
    drop(train);
    // `cat` / `contiguous` copy the strided pixel views into dense NCHW storage once.
    let train = Dataset {
        images: Tensor::f_cat(&train_x, 0)?,
        labels: Tensor::f_cat(&train_y, 0)?,
        classes: classes.clone(),
    };
    let test = Dataset { images: test_x.f_contiguous()?, labels: test_y, classes };
    Ok(Splits { train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_member_matches_only_the_batches_folder() {
        assert_eq!(
            layout_member(Path::new("cifar-10-batches-bin/data_batch_3.bin")),
            Some("data_batch_3.bin")
        );
        assert_eq!(
            layout_member(Path::new("./cifar-10-batches-bin/batches.meta.txt")),
            Some("batches.meta.txt")
        );
        assert_eq!(layout_member(Path::new("cifar-10-batches-bin/readme.html")), None);
        assert_eq!(layout_member(Path::new("other/data_batch_1.bin")), None);
        assert_eq!(layout_member(Path::new("data_batch_1.bin")), None);
    }

    #[test]
    fn meta_skips_blank_lines_and_rejects_wrong_counts() {
        let p = Path::new("batches.meta.txt");
        let names = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n\n";
        assert_eq!(parse_meta(names.as_bytes(), p).unwrap().len(), 10);
        assert!(matches!(parse_meta(b"a\nb\n", p), Err(DataError::BadMeta { .. })));
        let dup = "a\na\nc\nd\ne\nf\ng\nh\ni\nj\n";
        assert!(matches!(parse_meta(dup.as_bytes(), p), Err(DataError::BadMeta { .. })));
        assert!(matches!(parse_meta(&[0xff, 0xfe, b'\n'], p), Err(DataError::BadMeta { .. })));
    }

    #[test]
    fn parse_batch_reads_label_then_planes() {
        // Two records: labels 7 and 2; pixel byte k of record r is (r * 3 + k) % 251.
        let mut bytes = Vec::new();
        for (r, label) in [7u8, 2].into_iter().enumerate() {
            bytes.push(label);
            bytes.extend((0..PIXEL_BYTES).map(|k| ((r * 3 + k) % 251) as u8));
        }
        let (x, y) = parse_batch(&bytes, Path::new("t.bin")).unwrap();
        assert_eq!(x.size(), [2, 3, 32, 32]);
        assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [7, 2]);
        // Channel c, row i, column j is pixel byte c*1024 + i*32 + j.
        for (r, c, i, j) in [(0, 0, 0, 0), (0, 1, 5, 7), (1, 2, 31, 31), (1, 0, 3, 30)] {
            let k = c * 1024 + i * 32 + j;
            let want = ((r * 3 + k) % 251) as i64;
            assert_eq!(x.int64_value(&[r as i64, c as i64, i as i64, j as i64]), want);
        }
    }
}
