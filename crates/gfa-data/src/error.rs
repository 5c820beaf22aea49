//! The error type of gfa-data.
//!
//! Every malformed input has its own variant, and every message names the file (or URL) and says
//! how to fix it: the usual fix for a damaged CIFAR-10 copy is to fetch it again.
use std::path::PathBuf;

/// How to get a good copy of CIFAR-10, appended to the messages about damaged files.
pub const REFETCH_HINT: &str = "fetch a fresh copy with `gfa data fetch`, or download \
https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and unpack it";

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
