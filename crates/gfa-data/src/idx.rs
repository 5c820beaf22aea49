//! The IDX file format of MNIST and Fashion-MNIST (LeCun et al., <http://yann.lecun.com/exdb/mnist/>).
//!
//! A file is a 4-byte magic number — two zero bytes, a type code (`0x08` = unsigned byte, the
//! only type these data sets use) and the number of dimensions — then one big-endian `u32` per
//! dimension, then the values in row-major order. Images are `*-idx3-ubyte` (`[N, rows, cols]`),
//! labels `*-idx1-ubyte` (`[N]`); the official downloads are gzip-compressed (`.gz`). Reading
//! checks every byte of that: magic, type, dimension count, that the data are exactly as long as
//! the header says, gzip integrity.
use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{DataError, Result};

/// The type code of unsigned bytes.
pub const UBYTE: u8 = 0x08;

/// Reads an IDX file (gzip-compressed or not, told by its first two bytes) and returns its
/// dimensions and data, checking the dimension count is `ndim`.
pub fn read(path: &Path, ndim: usize) -> Result<(Vec<i64>, Vec<u8>)> {
    let raw =
        std::fs::read(path).map_err(|e| DataError::Io { path: path.to_path_buf(), source: e })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| {
            DataError::BadIdx { path: path.to_path_buf(), reason: format!("gzip: {e}") }
        })?;
        out
    } else {
        raw
    };
    let (dims, offset) = parse_header(&bytes, path, ndim)?;
    let mut bytes = bytes;
    bytes.drain(..offset);
    Ok((dims, bytes))
}

/// Checks the header of `bytes` and that the data after it have exactly the size it announces;
/// returns the dimensions and the data offset.
pub fn parse_header(bytes: &[u8], path: &Path, ndim: usize) -> Result<(Vec<i64>, usize)> {
    let bad = |reason: String| DataError::BadIdx { path: path.to_path_buf(), reason };
    if bytes.len() < 4 {
        return Err(bad(format!("{} bytes, shorter than the 4-byte magic number", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic number {:02x} {:02x} {:02x} {:02x} does not start with two zero bytes (not \
             an IDX file)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != UBYTE {
        return Err(bad(format!("type code 0x{:02x}, expected 0x08 (unsigned bytes)", bytes[2])));
    }
    if bytes[3] as usize != ndim {
        return Err(bad(format!(
            "{} dimensions, expected {ndim} ({})",
            bytes[3],
            if ndim == 3 { "an idx3 image file" } else { "an idx1 label file" }
        )));
    }
    let offset = 4 + 4 * ndim;
    if bytes.len() < offset {
        return Err(bad(format!("{} bytes, shorter than its {offset}-byte header", bytes.len())));
    }
    let dims: Vec<i64> = bytes[4..offset]
        .chunks(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as i64)
        .collect();
    let want = dims.iter().product::<i64>() as u128;
    let got = (bytes.len() - offset) as u128;
    if got != want {
        return Err(bad(format!(
            "the header says {dims:?} = {want} values but {got} bytes follow (truncated or \
             padded)"
        )));
    }
    Ok((dims, offset))
}

/// The bytes of an IDX file of unsigned bytes with dimensions `dims` (not compressed).
pub fn encode(dims: &[i64], data: &[u8]) -> Vec<u8> {
    assert_eq!(dims.iter().product::<i64>() as usize, data.len(), "IDX dims vs data");
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for d in dims {
        out.extend((*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// `[N, rows, cols]` image bytes as a `u8` tensor `[N, 1, rows, cols]`.
pub fn images_tensor(dims: &[i64], data: &[u8]) -> Result<Tensor> {
    let shape = [dims[0], 1, dims[1], dims[2]];
    Ok(Tensor::f_from_data_size(data, &shape, Kind::Uint8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_each_malformation() {
        let p = Path::new("t-idx3-ubyte");
        let bytes = encode(&[2, 3, 4], &[7; 24]);
        assert_eq!(parse_header(&bytes, p, 3).unwrap(), (vec![2, 3, 4], 16));
        let reason = |b: &[u8], ndim| match parse_header(b, p, ndim) {
            Err(DataError::BadIdx { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(&bytes[..3], 3).contains("shorter than the 4-byte"));
        assert!(reason(&[1, 0, 8, 3, 0, 0, 0, 0], 3).contains("two zero bytes"));
        let mut t = bytes.clone();
        t[2] = 0x0d;
        assert!(reason(&t, 3).contains("type code 0x0d"));
        assert!(reason(&bytes, 1).contains("expected 1"));
        assert!(reason(&bytes[..10], 3).contains("header"));
        assert!(reason(&bytes[..bytes.len() - 1], 3).contains("23 bytes follow"));
        let mut long = bytes.clone();
        long.push(0);
        assert!(reason(&long, 3).contains("25 bytes follow"));
    }
}
