//! Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, arXiv 1708.07747): 60,000 training and 10,000
//! test grey 28×28 images of 10 kinds of clothing, in the IDX format of MNIST ([`crate::idx`]).
//!
//! A copy is a folder holding `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each as downloaded (`.gz`) or
//! unpacked. Images become `u8` `[N, 1, 28, 28]` datasets, so models built for them take
//! 1×28×28 inputs. [`resolve_dir`] picks the folder from `--data` / `data.dir`, then
//! `$GFA_FASHION_MNIST_DIR`, then `./data/fashion-mnist`; `gfa data fetch fashion-mnist`
//! downloads the four official files there and checks their published MD5 digests.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::dataset::{Dataset, Splits};
use crate::error::{DataError, FASHION_REFETCH_HINT, Result};
use crate::idx;

/// The class names, in label order (the Fashion-MNIST README's table).
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The four files of a split pair: (train images, train labels, test images, test labels).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Where the Fashion-MNIST project publishes the files (its README's download links).
pub const OFFICIAL_BASE_URL: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/";

/// MD5 of each official `.gz` file, in [`FILES`] order, as published in the "Get the Data" table
/// of the Fashion-MNIST README (github.com/zalandoresearch/fashion-mnist); torchvision's
/// `FashionMNIST` checks the same digests.
pub const OFFICIAL_MD5: [&str; 4] = [
    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "25c81989df183df01b3e8a0aad5dffbe",
    "bef4ecab320f06d8554ea6380940ec79",
    "bb300cfdad3c16e7a12a480ee83cd310",
];

/// The environment variable naming the Fashion-MNIST folder.
pub const DIR_ENV: &str = "GFA_FASHION_MNIST_DIR";
/// The folder used when neither `--data` nor [`DIR_ENV`] is given.
pub const DEFAULT_DIR: &str = "data/fashion-mnist";
/// The folder name looked for inside a given folder.
pub const SUBDIR: &str = "fashion-mnist";

/// The path of file `name` in `dir`: as unpacked, else with `.gz`; `None` when neither exists.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))].into_iter().find(|p| p.is_file())
}

/// Whether `dir` holds the first file of a copy.
fn holds_copy(dir: &Path) -> bool {
    find(dir, FILES[0]).is_some()
}

/// The Fashion-MNIST folder to use: `cli` (`--data` / `data.dir`) if given, else
/// `$GFA_FASHION_MNIST_DIR`, else `./data/fashion-mnist`; the first one given is the only one
/// tried, as the folder itself or its `fashion-mnist/` subfolder.
pub fn resolve_dir(cli: Option<&Path>) -> Result<PathBuf> {
    resolve_dir_from(cli, std::env::var_os(DIR_ENV))
}

/// [`resolve_dir`] with the environment value passed in.
pub fn resolve_dir_from(cli: Option<&Path>, env: Option<OsString>) -> Result<PathBuf> {
    let (path, origin) = crate::cifar10::first_given(
        cli,
        env,
        DIR_ENV,
        DEFAULT_DIR,
        "the default ./data/fashion-mnist",
    );
    if holds_copy(&path) {
        return Ok(path);
    }
    let inner = path.join(SUBDIR);
    if holds_copy(&inner) {
        return Ok(inner);
    }
    Err(DataError::FashionNotFound { path, origin })
}

/// Loads the four files of `dir` (each `.gz` or unpacked).
pub fn load_dir(dir: &Path) -> Result<Splits> {
    let mut paths = Vec::new();
    for name in FILES {
        match find(dir, name) {
            Some(p) => paths.push(p),
            None => return Err(DataError::FashionMissingFile { path: dir.join(name) }),
        }
    }
    let train = split(&paths[0], &paths[1])?;
    let test = split(&paths[2], &paths[3])?;
    Ok(Splits { train, test })
}

/// One split from its image and label files.
fn split(images: &Path, labels: &Path) -> Result<Dataset> {
    let (idims, ibytes) = idx::read(images, 3)?;
    let (ldims, lbytes) = idx::read(labels, 1)?;
    if idims[0] != ldims[0] {
        return Err(DataError::IdxCountMismatch {
            images: images.to_path_buf(),
            n_images: idims[0] as usize,
            labels: labels.to_path_buf(),
            n_labels: ldims[0] as usize,
        });
    }
    if let Some(record) = lbytes.iter().position(|l| *l as usize >= CLASSES.len()) {
        return Err(DataError::IdxLabelOutOfRange {
            path: labels.to_path_buf(),
            record,
            value: lbytes[record],
        });
    }
    let x = idx::images_tensor(&idims, &ibytes)?;
    if let Some(value) = crate::dataset::constant_pixel(&x)? {
        let (path, records, fix) = (images.to_path_buf(), idims[0] as usize, FASHION_REFETCH_HINT);
        return Err(DataError::ConstantImages { path, records, value, fix });
    }
    let y = tch::Tensor::from_slice(&lbytes).to_kind(tch::Kind::Int64);
    Dataset::new(x, y, CLASSES.iter().map(|s| s.to_string()).collect())
}

/// Writes a Fashion-MNIST-shaped copy of [`crate::synthetic_shaped`] data (1×28×28, 10
/// classes) into `dir` as the four `.gz` IDX files, for tests and examples that exercise the
/// real reader without the download.
pub fn write_synthetic(dir: &Path, n_train: usize, n_test: usize, seed: u64) -> Result<()> {
    use std::io::Write;
    let s = crate::synthetic_shaped(n_train, n_test, seed, 1, 28);
    std::fs::create_dir_all(dir)
        .map_err(|e| DataError::Io { path: dir.to_path_buf(), source: e })?;
    for (d, (img, lab)) in [&s.train, &s.test].into_iter().zip([(0, 1), (2, 3)]) {
        let n = d.len() as i64;
        let pixels = Vec::<u8>::try_from(&d.images.contiguous().view([-1]))?;
        let labels: Vec<u8> =
            Vec::<i64>::try_from(&d.labels)?.into_iter().map(|l| l as u8).collect();
        for (k, bytes) in
            [(img, idx::encode(&[n, 28, 28], &pixels)), (lab, idx::encode(&[n], &labels))]
        {
            let path = dir.join(format!("{}.gz", FILES[k]));
            let io = |e| DataError::Io { path: path.clone(), source: e };
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).map_err(io)?;
            crate::atomic::write_atomic(&path, &gz.finish().map_err(io)?).map_err(io)?;
        }
    }
    Ok(())
}
