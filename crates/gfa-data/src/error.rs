//! The error type of gfa-data.
//!
//! Every malformed input has its own variant, and every message names the file (or URL) and says
//! how to fix it: the usual fix for a damaged CIFAR-10 copy is to fetch it again.
use std::path::PathBuf;

/// How to get a good copy of CIFAR-10, appended to the messages about damaged files.
pub const REFETCH_HINT: &str = "fetch a fresh copy with `gfa data fetch`, or download \
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and unpack it";

/// How to get a good copy of Fashion-MNIST, appended to the messages about damaged files.
pub const FASHION_REFETCH_HINT: &str = "fetch a fresh copy with `gfa data fetch fashion-mnist`, \
or download the four .gz files listed in the Fashion-MNIST README \
(github.com/zalandoresearch/fashion-mnist) into one folder";

/// Everything that can go wrong while reading, generating or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An operating-system error on a file that exists (permissions, disk full, ...).
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file of the official layout is not in the folder.
    #[error(
        "CIFAR-10 file {path} is missing: a CIFAR-10 folder holds data_batch_1.bin … \
         data_batch_5.bin, test_batch.bin and batches.meta.txt; {REFETCH_HINT}"
    )]
    MissingFile { path: PathBuf },

    /// An entry of the official layout that is there but is not a file (a folder, …).
    #[error(
        "{path} is {what}, not a CIFAR-10 file: in a CIFAR-10 folder data_batch_1.bin … \
         data_batch_5.bin, test_batch.bin and batches.meta.txt are files; move that entry away \
         and {REFETCH_HINT}"
    )]
    NotAFile { path: PathBuf, what: &'static str },

    /// A member of the official layout is not in the archive.
    #[error(
        "archive {archive} has no entry cifar-10-batches-bin/{entry}: it is not the CIFAR-10 \
         binary version (cifar-10-binary.tar.gz) or it is incomplete; {REFETCH_HINT}"
    )]
    MissingArchiveEntry { archive: PathBuf, entry: String },

    /// A batch file whose size is not a positive multiple of the 3,073-byte record.
    #[error(
        "{path} is {len} bytes, not a positive multiple of 3073 (1 label byte + 3072 pixel \
         bytes per record): the file is truncated or is not a CIFAR-10 binary batch; \
         {REFETCH_HINT}"
    )]
    BadFileSize { path: PathBuf, len: u64 },

    /// A batch file whose record count differs from the other batches of the same copy.
    #[error(
        "{path} holds {got} records but data_batch_1.bin holds {expected}: every batch file of \
         one copy holds the same number of records (10,000 in the official download); \
         {REFETCH_HINT}"
    )]
    RecordCount { path: PathBuf, expected: usize, got: usize },

    /// A label byte outside `0..num_classes`.
    #[error(
        "{path}: record {record} has label {value}, but CIFAR-10 labels are 0–{max}: the file \
         is corrupt or is not CIFAR-10 (CIFAR-100 binaries have 2 label bytes per record); \
         {REFETCH_HINT}",
        max = num_classes - 1
    )]
    LabelOutOfRange { path: PathBuf, record: usize, value: u8, num_classes: usize },

    /// A batch file whose pixels all hold one value (a zeroed or placeholder file): training
    /// on it or evaluating on it gives numbers that mean nothing.
    #[error(
        "{path}: every pixel of its {records} records is {value}, so it holds no images (a \
         zeroed or placeholder file); {fix}"
    )]
    ConstantImages { path: PathBuf, records: usize, value: u8, fix: &'static str },

    /// `batches.meta.txt` is not 10 class names, one a line.
    #[error(
        "bad class-name file {path}: {reason}; it must list the 10 class names in label order, \
         one a line (airplane, automobile, …, truck); {REFETCH_HINT}"
    )]
    BadMeta { path: PathBuf, reason: String },

    /// A `.tar.gz` that cannot be decompressed or read to the end.
    #[error("archive {path} is truncated or corrupt ({reason}); delete it and {REFETCH_HINT}")]
    CorruptArchive { path: PathBuf, reason: String },

    /// The downloaded bytes do not have the expected MD5 digest.
    #[error(
        "download from {url} has MD5 {got}, expected {expected}: the transfer was corrupted or \
         the URL serves another file; nothing was written; retry, or download the file by hand \
         and point --data at it"
    )]
    Md5Mismatch { url: String, expected: String, got: String },

    /// The HTTP request failed (connection, status, or short body).
    #[error(
        "download from {url} failed: {reason}; check the network (or proxy) and retry, or \
         download the file by hand and point --data at it"
    )]
    Http { url: String, reason: String },

    /// The fetch destination already holds something.
    #[error(
        "destination {path} already exists and is not empty; remove it or fetch into another \
         folder"
    )]
    DestinationExists { path: PathBuf },

    /// No CIFAR-10 copy at the resolved data location.
    #[error(
        "no CIFAR-10 data at {path} (from {origin}). Get it with `gfa data fetch` (downloads \
         to ./data), or download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and \
         unpack it so that <dir>/data_batch_1.bin exists (the archive unpacks to \
         cifar-10-batches-bin/; that folder, its parent, or the .tar.gz itself all work), then \
         pass --data <dir> or set GFA_DATA_DIR=<dir>"
    )]
    DataNotFound { path: PathBuf, origin: &'static str },

    /// No Fashion-MNIST copy at the resolved location.
    #[error(
        "no Fashion-MNIST data at {path} (from {origin}): a Fashion-MNIST folder holds \
         train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
         t10k-labels-idx1-ubyte (each may end in .gz). Get them with `gfa data fetch \
         fashion-mnist` (downloads to ./data/fashion-mnist), then pass --data <dir> (data.dir) \
         or set GFA_FASHION_MNIST_DIR=<dir>"
    )]
    FashionNotFound { path: PathBuf, origin: &'static str },

    /// A file of the Fashion-MNIST layout is not in the folder.
    #[error(
        "Fashion-MNIST file {path} (or {path}.gz) is missing: a Fashion-MNIST folder holds \
         the four IDX files of the train and t10k splits; {FASHION_REFETCH_HINT}"
    )]
    FashionMissingFile { path: PathBuf },

    /// A malformed IDX file (magic number, type, dimensions, length, gzip).
    #[error("{path} is not a valid IDX file: {reason}; {FASHION_REFETCH_HINT}")]
    BadIdx { path: PathBuf, reason: String },

    /// The image and label files of one split disagree on the record count.
    #[error(
        "{images} holds {n_images} images but {labels} holds {n_labels} labels: the two files \
         of a split hold one label per image; {FASHION_REFETCH_HINT}"
    )]
    IdxCountMismatch { images: PathBuf, n_images: usize, labels: PathBuf, n_labels: usize },

    /// A label byte outside `0..10`.
    #[error(
        "{path}: record {record} has label {value}, but Fashion-MNIST labels are 0–9: the file \
         is corrupt or is not Fashion-MNIST; {FASHION_REFETCH_HINT}"
    )]
    IdxLabelOutOfRange { path: PathBuf, record: usize, value: u8 },

    /// Tensors handed to a constructor do not have the documented shapes or kinds.
    #[error("{what}: expected {expected}, got {got}")]
    BadShape { what: &'static str, expected: String, got: String },

    /// A configuration value outside its domain.
    #[error("invalid {key} = {value}: {reason}")]
    BadConfig { key: &'static str, value: String, reason: String },

    #[error(transparent)]
    Tch(#[from] tch::TchError),
}

impl DataError {
    /// Wraps an error reading a file of the CIFAR-10 layout: "not found" becomes
    /// [`DataError::MissingFile`], anything else [`DataError::Io`].
    /// [`DataError::NotAFile`] when `path` exists but is not a file.
    pub(crate) fn not_a_file(path: &std::path::Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok().filter(|m| !m.is_file())?;
        let what = if meta.is_dir() { "a folder" } else { "not a regular file" };
        Some(DataError::NotAFile { path: path.to_path_buf(), what })
    }

    pub(crate) fn reading(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::MissingFile { path }
        } else {
            DataError::Io { path, source }
        }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
