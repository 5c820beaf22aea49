//! Hand-made CIFAR-10 files and a loopback HTTP server for the tests.
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gfa_data::cifar10::{META_FILE, PIXEL_BYTES, TEST_FILE, TRAIN_FILES};

/// The official class names, in label order.
pub const CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// The official `batches.meta.txt` (names, then a blank line).
pub fn meta_text() -> String {
    CLASSES.join("\n") + "\n\n"
}

/// Pixel byte `k` (0..3072) of the record with global id `id`.
pub fn pixel(id: usize, k: usize) -> u8 {
    ((id * 31 + k * 7 + k / 1024) % 256) as u8
}

/// Label of the record with global id `id`.
pub fn label(id: usize) -> u8 {
    ((id * 3 + 1) % 10) as u8
}

/// The bytes of a batch file of records `ids`.
pub fn batch_bytes(ids: impl IntoIterator<Item = usize>) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        out.push(label(id));
        out.extend((0..PIXEL_BYTES).map(|k| pixel(id, k)));
    }
    out
}

/// The files of a copy whose batches hold `per_file` records each: train file `f` holds ids
/// `f*per_file ..`, the test file ids `5*per_file ..`.
pub fn layout(per_file: usize) -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&'static str, Vec<u8>)> = TRAIN_FILES
        .iter()
        .enumerate()
        .map(|(f, n)| (*n, batch_bytes(f * per_file..(f + 1) * per_file)))
        .collect();
    files.push((TEST_FILE, batch_bytes(5 * per_file..6 * per_file)));
    files.push((META_FILE, meta_text().into_bytes()));
    files
}

/// Writes `files` into `dir`.
pub fn write_files(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A `.tar.gz` holding `files` under `cifar-10-batches-bin/`, plus a `readme.html` first as in
/// the official archive.
pub fn archive_bytes(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), bytes).unwrap();
    };
    add("readme.html", b"<html>CIFAR-10</html>");
    for (name, bytes) in files {
        add(name, bytes);
    }
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

/// Lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    use std::fmt::Write;
    Md5::digest(bytes).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One response of [`serve_routes`]: request path (relative to the base URL; empty matches every
/// path), status line, body, announced `Content-Length`.
pub type Route = (String, &'static str, Vec<u8>, usize);

/// Serves `routes` to at most `max_conns` connections, on 127.0.0.1, for at most 20 seconds
/// (unknown paths get 404). Returns the base URL (ending in `/`) and the server thread.
pub fn serve_routes(routes: Vec<Route>, max_conns: usize) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < max_conns && Instant::now() < deadline {
            let stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            served += 1;
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            let mut path = None;
            // Read the request head up to the blank line; the first line names the path.
            while reader.read_line(&mut line).map(|k| k > 0).unwrap_or(false) {
                if line == "\r\n" || line == "\n" {
                    break;
                }
                if path.is_none() {
                    path = line
                        .split_whitespace()
                        .nth(1)
                        .map(|p| p.trim_start_matches('/').to_string());
                }
                line.clear();
            }
            let path = path.unwrap_or_default();
            let route = routes.iter().find(|(p, ..)| p.is_empty() || *p == path);
            let (status, body, content_length) = match route {
                Some((_, status, body, len)) => (*status, body.as_slice(), *len),
                None => ("404 Not Found", &b"no such file"[..], 12),
            };
            let mut stream = stream;
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\n\
                 Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
            let _ = stream.flush();
        }
    });
    (base, handle)
}
