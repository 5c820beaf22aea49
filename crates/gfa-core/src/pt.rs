//! Reading what PyTorch's `torch.save` writes, in Rust: no Python, no code from the file runs.
//!
//! Since PyTorch 1.6, `torch.save` writes a zip archive `<name>/data.pkl` (a pickle, protocol 2
//! by default) plus one member `<name>/data/<key>` per tensor storage (raw little-endian
//! elements). In the pickle, a tensor is a call `torch._utils._rebuild_tensor_v2(storage, offset,
//! size, stride, …)` whose storage is a *persistent id* `("storage", torch.FloatStorage, key,
//! location, numel)`. [`read`] runs the pickle on a small stack machine that builds values
//! instead of calling anything: tensors become [`Value::Tensor`], dictionaries (`OrderedDict`
//! included) [`Value::Dict`], and any other class an inert [`Value::Object`] that remembers its
//! class name, so checkpoints that also hold an `argparse.Namespace`, NumPy scalars or optimizer
//! state still read.
//!
//! Before 1.6, `torch.save` wrote one stream (the *legacy* format, still written with
//! `_use_new_zipfile_serialization=False`): five pickles one after the other — the magic number
//! 0x1950a86a20f9469cfc6c, the protocol version 1001, a dict of system facts (`little_endian`,
//! `type_sizes`), the object itself (persistent ids `("storage", torch.FloatStorage, key,
//! location, numel, None)`), and the sorted list of storage keys — then, for each key in that
//! order, the storage's element count (int64) and its raw elements, little-endian. [`read`] reads
//! both formats into the same [`Value`] tree.
//!
//! A file from outside is read defensively: any byte string gives a [`Value`] or a [`PtError`],
//! never a panic, and nothing is allocated beyond what the file's own bytes hold
//! (`tests/it/pt_fuzz.rs` checks this on random and mutated files).
//!
//! Why not libtorch's own unpickler: the `tch` crate does not expose `torch::pickle_load`
//! (only TorchScript's `torch::jit::load` and the C++ `torch::load` archives), so using it would
//! mean a C++ shim compiled against libtorch; and it rejects checkpoints holding Python objects
//! it does not know, where a state dict under `"state_dict"` beside an `argparse.Namespace` is
//! the common case. Reading here also lets every unsupported file be named precisely: TorchScript
//! archives, plain pickles, truncated files.
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::ops::Range;
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

/// What can be wrong with a `.pt` file; every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum PtError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is truncated: it ends at byte {len}, inside {inside}; the download or copy was \
         cut short, fetch the file again"
    )]
    Truncated { path: PathBuf, len: usize, inside: String },
    #[error(
        "{path} (legacy torch.save format) holds {class} storages (key {key}); gfa reads legacy \
         files whose float tensors are float32: convert the model with `model.float()` before \
         saving, or save it in the zip format (PyTorch ≥ 1.6), which `gfa import` converts"
    )]
    LegacyDtype { path: PathBuf, class: String, key: String },
    #[error(
        "{path} is a TorchScript archive (torch.jit.save: it has {member}), not a torch.save \
         file; evaluate it as it is with `gfa eval --torchscript {path}`, or save its weights \
         with `torch.save(torch.jit.load(\"{path}\").state_dict(), \"weights.pt\")`"
    )]
    TorchScript { path: PathBuf, member: String },
    #[error("{path} is not a torch.save file: {reason}")]
    NotTorchSave { path: PathBuf, reason: String },
    #[error("{path}: damaged torch.save file: {reason}; save it again")]
    Corrupt { path: PathBuf, reason: String },
    /// A well-formed file holding something gfa does not import (complex, sparse or quantized
    /// tensors); the reason names the fix.
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
}

type PtResult<T> = std::result::Result<T, PtError>;

/// A value of the pickle, with tensors read.
#[derive(Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// `dict` and `collections.OrderedDict`, in file order.
    Dict(Vec<(Value, Value)>),
    Tensor(Tensor),
    /// An instance of any other class (`module.name`), kept inert.
    Object(String),
    /// A class or function reference that was never called.
    Global(String),
}

impl Value {
    /// A short description for error messages (`dict of 12 entries`, `tensor [3, 3]`, …).
    pub fn describe(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(_) => "bool".into(),
            Value::Int(_) => "int".into(),
            Value::Float(_) => "float".into(),
            Value::Str(_) => "str".into(),
            Value::Bytes(_) => "bytes".into(),
            Value::List(v) => format!("list of {}", v.len()),
            Value::Tuple(v) => format!("tuple of {}", v.len()),
            Value::Dict(v) => format!("dict of {} entries", v.len()),
            Value::Tensor(t) => format!("tensor {:?}", t.size()),
            Value::Object(c) => format!("{c} object"),
            Value::Global(g) => format!("reference to {g}"),
        }
    }

    /// The entry under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => {
                items.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// The string keys of a dict, in order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Value::Dict(items) => items
                .iter()
                .filter_map(|(k, _)| match k {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        }
    }
}

/// The zip local-file signature every zip archive starts with.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The pickled magic number the legacy format starts with: PROTO 2, LONG1 of 10 bytes,
/// 0x1950a86a20f9469cfc6c little-endian.
pub const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// Reads a `torch.save` file (zip or legacy format) into a [`Value`] tree, tensors on the CPU
/// (contiguous, the dtype they were saved with).
pub fn read(path: &Path) -> PtResult<Value> {
    let io = |source| PtError::Io { path: path.to_path_buf(), source };
    if path.is_dir() {
        return Err(PtError::NotTorchSave {
            path: path.to_path_buf(),
            reason: "it is a folder; pass the .pt / .pth file inside it".into(),
        });
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut head = [0u8; 16];
    let got = read_up_to(&mut file, &mut head).map_err(io)?;
    match sniff(&head[..got], path)? {
        Format::Zip => {
            file.rewind().map_err(io)?;
            read_zip(file, file_len, path)
        }
        Format::Legacy => {
            let bytes = std::fs::read(path).map_err(io)?;
            read_legacy(&bytes, path)
        }
    }
}

/// [`read`] of a file already in memory; `path` names it in errors.
pub fn read_bytes(bytes: &[u8], path: &Path) -> PtResult<Value> {
    match sniff(bytes, path)? {
        Format::Zip => read_zip(std::io::Cursor::new(bytes), bytes.len() as u64, path),
        Format::Legacy => read_legacy(bytes, path),
    }
}

enum Format {
    Zip,
    Legacy,
}

/// The format a file's first bytes announce, or why it is no `torch.save` file.
fn sniff(head: &[u8], path: &Path) -> PtResult<Format> {
    if head.starts_with(ZIP_MAGIC) {
        return Ok(Format::Zip);
    }
    if head.starts_with(LEGACY_MAGIC) {
        return Ok(Format::Legacy);
    }
    let reason = if head.first() == Some(&0x80) {
        "it is a plain pickle (no tensor storages); save the state dict with torch.save"
    } else {
        "it is neither a zip archive (PyTorch ≥ 1.6) nor a legacy torch.save stream; gfa \
         imports what torch.save(model.state_dict(), \"file.pt\") writes"
    };
    Err(PtError::NotTorchSave { path: path.to_path_buf(), reason: reason.into() })
}

fn read_zip<R: Read + Seek>(file: R, file_len: u64, path: &Path) -> PtResult<Value> {
    let corrupt = |reason: String| PtError::Corrupt { path: path.to_path_buf(), reason };
    let mut zip = zip::ZipArchive::new(file).map_err(|e| corrupt(format!("zip: {e}")))?;
    let names: Vec<String> = zip.file_names().map(String::from).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .cloned()
        .ok_or_else(|| PtError::NotTorchSave {
            path: path.to_path_buf(),
            reason: "the zip archive has no <name>/data.pkl member".into(),
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Some(member) = names.iter().find(|n| {
        *n == &format!("{prefix}constants.pkl") || n.starts_with(&format!("{prefix}code/"))
    }) {
        return Err(PtError::TorchScript { path: path.to_path_buf(), member: member.clone() });
    }
    let mut member = |name: &str| -> PtResult<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(|e| corrupt(format!("member {name}: {e}")))?;
        check_member_size(name, f.size(), f.compression(), file_len).map_err(corrupt)?;
        let mut bytes = Vec::with_capacity(f.size().min(file_len) as usize);
        f.read_to_end(&mut bytes).map_err(|e| corrupt(format!("member {name}: {e}")))?;
        Ok(bytes)
    };
    if names.contains(&format!("{prefix}byteorder")) {
        let order = member(&format!("{prefix}byteorder"))?;
        if order != b"little" {
            return Err(corrupt(format!(
                "byte order {:?}; gfa reads little-endian files only",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pickle = member(&pkl)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut machine = Machine::new(&pickle, 0, false);
    machine
        .run(&mut |key: &str| -> PtResult<Option<Vec<u8>>> {
            if let Some(b) = storages.get(key) {
                return Ok(Some(b.clone()));
            }
            let b = member(&format!("{prefix}data/{key}"))?;
            storages.insert(key.to_string(), b.clone());
            Ok(Some(b))
        })
        .map_err(|e| e.into_pt(path, "the pickle", None))
}

/// The protocol version the legacy format records.
const LEGACY_PROTOCOL: i64 = 1001;

/// Reads the legacy (pre-1.6) format: the header pickles, the object, the storage keys, then the
/// storages. The object's pickle is run twice: once to learn each storage's dtype and size (its
/// bytes come after it), then again with them.
fn read_legacy(bytes: &[u8], path: &Path) -> PtResult<Value> {
    let corrupt = |reason: String| PtError::Corrupt { path: path.to_path_buf(), reason };
    let no_storage = &mut |_: &str| -> PtResult<Option<Vec<u8>>> {
        Err(PtError::Corrupt {
            path: path.to_path_buf(),
            reason: "a tensor in the legacy header".into(),
        })
    };
    let mut pos = 0;
    let mut header = |what: &str, pos: &mut usize| -> PtResult<Value> {
        let mut m = Machine::new(bytes, *pos, true);
        let v = m.run(no_storage).map_err(|e| e.into_pt(path, what, Some(bytes.len())))?;
        *pos = m.pos;
        Ok(v)
    };
    header("the magic number", &mut pos)?; // its bytes were checked by `sniff`
    match header("the protocol version", &mut pos)? {
        Value::Int(LEGACY_PROTOCOL) => {}
        other => {
            return Err(corrupt(format!(
                "legacy protocol version {}, gfa reads {LEGACY_PROTOCOL}",
                match other {
                    Value::Int(i) => i.to_string(),
                    v => v.describe(),
                }
            )));
        }
    }
    let sys = header("the system information", &mut pos)?;
    if matches!(sys.get("little_endian"), Some(Value::Bool(false))) {
        return Err(corrupt(
            "written on a big-endian machine; gfa reads little-endian files".into(),
        ));
    }

    // Pass 1: the object, with each tensor left out, to learn its storages.
    let object_start = pos;
    let mut first = Machine::new(bytes, object_start, true);
    first
        .run(&mut |_: &str| Ok(None))
        .map_err(|e| e.into_pt(path, "the pickled object", Some(bytes.len())))?;
    pos = first.pos;
    let mut kinds: HashMap<&str, (Kind, i64)> = HashMap::new();
    for o in &first.arena {
        if let Obj::Storage(kind, key, numel) = o {
            kinds.insert(key.as_str(), (*kind, *numel));
        }
    }
    let keys = match header("the storage key list", &mut pos)? {
        Value::List(keys) => keys,
        other => return Err(corrupt(format!("storage key list is a {}", other.describe()))),
    };

    // The storages: per key, its element count (int64) and its elements.
    let mut ranges: HashMap<String, Range<usize>> = HashMap::new();
    for key in &keys {
        let Value::Str(key) = key else {
            return Err(corrupt(format!("a storage key that is a {}", key.describe())));
        };
        let Some(&(kind, numel)) = kinds.get(key.as_str()) else {
            return Err(corrupt(format!("storage {key} is listed but no tensor uses it")));
        };
        let truncated = |what: String| PtError::Truncated {
            path: path.to_path_buf(),
            len: bytes.len(),
            inside: what,
        };
        let Some(count) = bytes.get(pos..pos + 8) else {
            return Err(truncated(format!("the element count of storage {key}")));
        };
        let count = i64::from_le_bytes(count.try_into().expect("8 bytes"));
        pos += 8;
        if count != numel {
            return Err(corrupt(format!(
                "storage {key} records {count} elements, its tensors {numel}"
            )));
        }
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()))
            .ok_or_else(|| corrupt(format!("storage {key} of {numel} elements")))?;
        let Some(end) = pos.checked_add(len).filter(|e| *e <= bytes.len()) else {
            return Err(truncated(format!(
                "storage {key} ({numel} {kind:?} elements from byte {pos})"
            )));
        };
        ranges.insert(key.clone(), pos..end);
        pos = end;
    }
    if let Some(key) = kinds.keys().find(|k| !ranges.contains_key(**k)) {
        return Err(corrupt(format!("storage {key} is used but not in the storage key list")));
    }

    // Pass 2: the object with its tensors.
    let mut second = Machine::new(bytes, object_start, true);
    second
        .run(&mut |key: &str| -> PtResult<Option<Vec<u8>>> {
            let r = ranges.get(key).cloned().ok_or_else(|| PtError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("storage {key} has no data"),
            })?;
            Ok(Some(bytes[r].to_vec()))
        })
        .map_err(|e| e.into_pt(path, "the pickled object", Some(bytes.len())))
}

/// An error unless a zip member's declared size `claimed` fits in a `file_len`-byte file
/// (stored members are at most the file; deflated ones expand at most 1032:1), checked before
/// anything is allocated for it.
pub fn check_member_size(
    name: &str,
    claimed: u64,
    method: zip::CompressionMethod,
    file_len: u64,
) -> std::result::Result<(), String> {
    let most = match method {
        zip::CompressionMethod::Stored => file_len,
        _ => file_len.saturating_mul(1032),
    };
    if claimed > most {
        return Err(format!(
            "member {name} claims {claimed} bytes ({method}), more than the {file_len}-byte \
             file can hold"
        ));
    }
    Ok(())
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

enum MachineError {
    Pt(PtError),
    Bad(String),
    /// The bytes end inside a pickle.
    Truncated,
    /// A legacy file's float storage that is not float32: its class and key.
    Dtype(String, String),
    /// Well-formed, but not something gfa imports.
    Unsupported(String),
}

impl MachineError {
    /// The error for the file at `path`, the machine reading `what`.
    /// A truncated pickle is [`PtError::Truncated`] when `len` (the file's length) is given,
    /// damage otherwise (a zip member's pickle).
    fn into_pt(self, path: &Path, what: &str, len: Option<usize>) -> PtError {
        let path = path.to_path_buf();
        match self {
            MachineError::Pt(e) => e,
            MachineError::Bad(reason) => PtError::Corrupt { path, reason },
            MachineError::Truncated => match len {
                Some(len) => PtError::Truncated { path, len, inside: what.to_string() },
                None => PtError::Corrupt {
                    path,
                    reason: format!("{what} ends in the middle of an opcode"),
                },
            },
            MachineError::Dtype(class, key) => PtError::LegacyDtype { path, class, key },
            MachineError::Unsupported(reason) => PtError::Unsupported { path, reason },
        }
    }
}

impl From<PtError> for MachineError {
    fn from(e: PtError) -> Self {
        MachineError::Pt(e)
    }
}

type MResult<T> = std::result::Result<T, MachineError>;

fn bad<T>(msg: impl Into<String>) -> MResult<T> {
    Err(MachineError::Bad(msg.into()))
}

/// Objects live in an arena so that the memo and the stack share them, as in Python: a dict
/// memoized before its items are set sees them.
#[derive(Debug)]
enum Obj {
    Scalar(Value),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Global(String),
    Object(String),
    /// A persistent id's storage: dtype, key, element count.
    Storage(Kind, String, i64),
    Tensor(Tensor),
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Obj(usize),
    Mark,
}

struct Machine<'a> {
    code: &'a [u8],
    pos: usize,
    arena: Vec<Obj>,
    stack: Vec<Slot>,
    memo: HashMap<u64, usize>,
    /// Reading a legacy file: storages carry a sixth field, and float storages must be float32.
    legacy: bool,
}

/// A storage's bytes by key; `None` leaves its tensors out (the legacy reader's first pass).
type StorageFn<'f> = dyn FnMut(&str) -> PtResult<Option<Vec<u8>>> + 'f;

/// The most values [`Machine::resolve`] builds: shared references (a memoized list put twice
/// into another, again and again) would otherwise build exponentially many.
const RESOLVE_BUDGET: usize = 1 << 22;

/// The dtype of a `torch.<Name>Storage` class.
fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class.strip_prefix("torch.")? {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

impl<'a> Machine<'a> {
    /// A machine for the pickle starting at byte `pos` of `code`.
    fn new(code: &'a [u8], pos: usize, legacy: bool) -> Self {
        Self { code, pos, arena: Vec::new(), stack: Vec::new(), memo: HashMap::new(), legacy }
    }

    fn take(&mut self, n: usize) -> MResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.code.len());
        let Some(end) = end else { return Err(MachineError::Truncated) };
        let s = &self.code[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> MResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn le_u32(&mut self) -> MResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn le_u64(&mut self) -> MResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> MResult<String> {
        let rest = &self.code[self.pos..];
        let Some(n) = rest.iter().position(|b| *b == b'\n') else {
            return Err(MachineError::Truncated);
        };
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn alloc(&mut self, o: Obj) -> usize {
        self.arena.push(o);
        self.arena.len() - 1
    }

    fn push(&mut self, o: Obj) {
        let id = self.alloc(o);
        self.stack.push(Slot::Obj(id));
    }

    fn pop(&mut self) -> MResult<usize> {
        match self.stack.pop() {
            Some(Slot::Obj(id)) => Ok(id),
            Some(Slot::Mark) => bad("a mark where a value was expected"),
            None => bad("stack underflow"),
        }
    }

    fn top(&self) -> MResult<usize> {
        match self.stack.last() {
            Some(Slot::Obj(id)) => Ok(*id),
            _ => bad("no value on the stack"),
        }
    }

    /// Pops everything down to the last mark (and the mark).
    fn pop_mark(&mut self) -> MResult<Vec<usize>> {
        let Some(m) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return bad("no mark on the stack");
        };
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Obj(id) => id,
                Slot::Mark => unreachable!("marks above the last mark"),
            })
            .collect())
    }

    fn int_of(&self, id: usize) -> MResult<i64> {
        match &self.arena[id] {
            Obj::Scalar(Value::Int(i)) => Ok(*i),
            Obj::Scalar(Value::Bool(b)) => Ok(i64::from(*b)),
            o => bad(format!("expected an integer, got {o:?}")),
        }
    }

    fn ints_of(&self, id: usize) -> MResult<Vec<i64>> {
        match &self.arena[id] {
            Obj::Tuple(v) | Obj::List(v) => v.iter().map(|i| self.int_of(*i)).collect(),
            o => bad(format!("expected a tuple of integers, got {o:?}")),
        }
    }

    fn str_of(&self, id: usize) -> MResult<&str> {
        match &self.arena[id] {
            Obj::Scalar(Value::Str(s)) => Ok(s),
            o => bad(format!("expected a string, got {o:?}")),
        }
    }

    fn set_items(&mut self, target: usize, kv: Vec<usize>) -> MResult<()> {
        if !kv.len().is_multiple_of(2) {
            return bad("SETITEMS with an odd number of values");
        }
        let pairs = kv.chunks(2).map(|p| (p[0], p[1]));
        match &mut self.arena[target] {
            Obj::Dict(items) => items.extend(pairs),
            // Items of a dict subclass gfa does not model: kept out of the result.
            Obj::Object(_) => {}
            o => return bad(format!("SETITEMS on {o:?}")),
        }
        Ok(())
    }

    fn append(&mut self, target: usize, values: Vec<usize>) -> MResult<()> {
        match &mut self.arena[target] {
            Obj::List(items) => items.extend(values),
            Obj::Object(_) => {}
            o => return bad(format!("APPENDS on {o:?}")),
        }
        Ok(())
    }

    /// `callable(*args)`: tensors and dicts are built, anything else becomes an inert object.
    fn call(&mut self, callable: usize, args: usize, storage: &mut StorageFn<'_>) -> MResult<Obj> {
        let name = match &self.arena[callable] {
            Obj::Global(g) => g.clone(),
            o => return bad(format!("call of a non-class {o:?}")),
        };
        let argv = match &self.arena[args] {
            Obj::Tuple(v) => v.clone(),
            o => return bad(format!("call arguments are not a tuple: {o:?}")),
        };
        match name.as_str() {
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                if argv.len() < 4 {
                    return bad(format!("{name} with {} arguments", argv.len()));
                }
                let (kind, key, numel) = match &self.arena[argv[0]] {
                    Obj::Storage(k, key, n) => (*k, key.clone(), *n),
                    o => return bad(format!("{name}: not a storage: {o:?}")),
                };
                let offset = self.int_of(argv[1])?;
                let size = self.ints_of(argv[2])?;
                let stride = self.ints_of(argv[3])?;
                match storage(&key)? {
                    Some(bytes) => {
                        Ok(Obj::Tensor(tensor_from(&bytes, kind, numel, offset, &size, &stride)?))
                    }
                    None => Ok(Obj::Object("torch.Tensor".into())),
                }
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match argv.first().map(|a| &self.arena[*a]) {
                    Some(Obj::Tensor(t)) => Ok(Obj::Tensor(t.shallow_clone())),
                    // A tensor the legacy reader's first pass left out.
                    Some(Obj::Object(c)) if c == "torch.Tensor" => Ok(Obj::Object(c.clone())),
                    _ => bad(format!("{name} without a tensor")),
                }
            }
            "collections.OrderedDict" | "builtins.dict" => Ok(Obj::Dict(Vec::new())),
            n if n.starts_with("torch._utils._rebuild_sparse") => {
                Err(MachineError::Unsupported(format!(
                    "it holds a sparse tensor ({n}); gfa imports dense tensors: save \
                     `{{k: v.to_dense() for k, v in state_dict.items()}}`"
                )))
            }
            n if n.starts_with("torch._utils._rebuild_qtensor") => {
                Err(MachineError::Unsupported(format!(
                    "it holds a quantized tensor ({n}); gfa imports float weights: save the \
                     state dict of the model before quantization, or `v.dequantize()` of each"
                )))
            }
            _ => Ok(Obj::Object(name)),
        }
    }

    /// The pickle machine's loop: one arm per opcode it reads, each a few lines over the
    /// machine's stack, memo and arena (long as one `match`: splitting it would scatter that
    /// shared state over many functions without making any arm simpler).
    fn run(&mut self, storage: &mut StorageFn<'_>) -> MResult<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le_u64()?; // FRAME
                }
                b'.' => {
                    let id = self.pop()?;
                    return self.resolve(id, 0, &mut RESOLVE_BUDGET.clone());
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack.pop();
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(Slot::Obj(id));
                }
                b'N' => self.push(Obj::Scalar(Value::None)),
                0x88 => self.push(Obj::Scalar(Value::Bool(true))),
                0x89 => self.push(Obj::Scalar(Value::Bool(false))),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    self.push(Obj::Scalar(Value::Int(v as i64)));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Obj::Scalar(Value::Int(v as i64)));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes"));
                    self.push(Obj::Scalar(Value::Int(v as i64)));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.le_u32()? as usize };
                    let bytes = self.take(n)?;
                    let v = if n <= 8 {
                        let fill =
                            if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
                        let mut b = [fill; 8];
                        b[..n].copy_from_slice(bytes);
                        Value::Int(i64::from_le_bytes(b))
                    } else {
                        // Too wide for i64 (the legacy magic number is one): kept opaque.
                        Value::Bytes(bytes.to_vec())
                    };
                    self.push(Obj::Scalar(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Obj::Scalar(Value::Float(v)));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.le_u32()? as usize,
                        0x8c => self.u8()? as usize,
                        _ => self.le_u64()? as usize,
                    };
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.push(Obj::Scalar(Value::Str(s)));
                }
                b'T' | b'U' | b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'T' | b'B' => self.le_u32()? as usize,
                        b'U' | b'C' => self.u8()? as usize,
                        _ => self.le_u64()? as usize,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push(Obj::Scalar(Value::Bytes(b)));
                }
                b']' => self.push(Obj::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items));
                }
                b'a' => {
                    let v = self.pop()?;
                    let target = self.top()?;
                    self.append(target, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?;
                }
                b')' => self.push(Obj::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                b'}' => self.push(Obj::Dict(Vec::new())),
                b'd' => {
                    let kv = self.pop_mark()?;
                    let id = self.alloc(Obj::Dict(Vec::new()));
                    self.set_items(id, kv)?;
                    self.stack.push(Slot::Obj(id));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![k, v])?;
                }
                b'u' => {
                    let kv = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, kv)?;
                }
                0x8f => self.push(Obj::List(Vec::new())), // EMPTY_SET, kept as a list
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Obj::Global(format!("{module}.{name}")));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let g = format!("{}.{}", self.str_of(module)?, self.str_of(name)?);
                    self.push(Obj::Global(g));
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let o = self.call(callable, args, storage)?;
                    self.push(o);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let o = self.call(callable, args, storage)?;
                    self.push(o);
                }
                b'b' => {
                    // BUILD: the state of dicts (OrderedDict's `_metadata`) and objects is
                    // not needed.
                    self.pop()?;
                    self.top()?;
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo.insert(k, self.top()?);
                }
                b'r' => {
                    let k = self.le_u32()? as u64;
                    self.memo.insert(k, self.top()?);
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo.insert(k, self.top()?);
                }
                b'p' => {
                    let k = self.line()?.trim().parse().unwrap_or(u64::MAX);
                    self.memo.insert(k, self.top()?);
                }
                b'h' | b'j' | b'g' => {
                    let k = match op {
                        b'h' => self.u8()? as u64,
                        b'j' => self.le_u32()? as u64,
                        _ => self.line()?.trim().parse().unwrap_or(u64::MAX),
                    };
                    let Some(&id) = self.memo.get(&k) else {
                        return bad(format!("memo key {k} read before it was written"));
                    };
                    self.stack.push(Slot::Obj(id));
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let o = self.persistent(pid)?;
                    self.push(o);
                }
                other => {
                    return bad(format!(
                        "pickle opcode 0x{other:02x} at byte {} is not one torch.save writes",
                        self.pos - 1
                    ));
                }
            }
        }
    }

    /// `("storage", torch.FloatStorage, key, location, numel)` → a storage.
    fn persistent(&self, pid: usize) -> MResult<Obj> {
        let Obj::Tuple(parts) = &self.arena[pid] else {
            return bad("a persistent id that is not a tuple");
        };
        if parts.len() < 5 || self.str_of(parts[0])? != "storage" {
            return bad("a persistent id that is not a tensor storage");
        }
        let class = match &self.arena[parts[1]] {
            Obj::Global(g) => g.clone(),
            o => return bad(format!("storage type {o:?}")),
        };
        let Some(kind) = storage_kind(&class) else {
            if class.contains("Complex") {
                return Err(MachineError::Unsupported(format!(
                    "it holds a complex tensor ({class}); a classifier's weights are real: \
                     save the real weights (`v.real` or the model they came from)"
                )));
            }
            return bad(format!(
                "storage type {class} (gfa reads float, integer and bool tensors)"
            ));
        };
        let key = self.str_of(parts[2])?.to_string();
        if self.legacy {
            if matches!(kind, Kind::Double | Kind::Half | Kind::BFloat16) {
                return Err(MachineError::Dtype(class, key));
            }
            if parts.get(5).is_some_and(|v| !matches!(self.arena[*v], Obj::Scalar(Value::None))) {
                return bad(format!(
                    "storage {key} is a view of another storage, which only PyTorch 0.3 and \
                     earlier wrote"
                ));
            }
        }
        let numel = self.int_of(parts[4])?;
        if numel < 0 {
            return bad(format!("storage {key} of {numel} elements"));
        }
        Ok(Obj::Storage(kind, key, numel))
    }

    /// The value tree under `id` (depth-limited: a cycle is an error, not a hang; at most
    /// `budget` values in all).
    fn resolve(&self, id: usize, depth: usize, budget: &mut usize) -> MResult<Value> {
        if depth > 200 {
            return bad("values nested more than 200 deep (a reference cycle?)");
        }
        let Some(left) = budget.checked_sub(1) else {
            return bad(format!("more than {RESOLVE_BUDGET} values (shared references)"));
        };
        *budget = left;
        let all = |ids: &[usize], budget: &mut usize| -> MResult<Vec<Value>> {
            ids.iter().map(|i| self.resolve(*i, depth + 1, budget)).collect()
        };
        Ok(match &self.arena[id] {
            Obj::Scalar(v) => match v {
                Value::None => Value::None,
                Value::Bool(b) => Value::Bool(*b),
                Value::Int(i) => Value::Int(*i),
                Value::Float(f) => Value::Float(*f),
                Value::Str(s) => Value::Str(s.clone()),
                Value::Bytes(b) => Value::Bytes(b.clone()),
                _ => unreachable!("scalars only"),
            },
            Obj::List(v) => Value::List(all(v, budget)?),
            Obj::Tuple(v) => Value::Tuple(all(v, budget)?),
            Obj::Dict(kv) => {
                let mut items = Vec::with_capacity(kv.len());
                for (k, v) in kv {
                    let k = self.resolve(*k, depth + 1, budget)?;
                    items.push((k, self.resolve(*v, depth + 1, budget)?));
                }
                Value::Dict(items)
            }
            Obj::Global(g) => Value::Global(g.clone()),
            Obj::Object(c) => Value::Object(c.clone()),
            Obj::Storage(..) => Value::Object("torch storage".into()),
            Obj::Tensor(t) => Value::Tensor(t.shallow_clone()),
        })
    }
}

/// The tensor `storage[offset..]` viewed with `size` and `stride` (elements), copied out.
fn tensor_from(
    bytes: &[u8],
    kind: Kind,
    numel: i64,
    offset: i64,
    size: &[i64],
    stride: &[i64],
) -> MResult<Tensor> {
    let elt = kind.elt_size_in_bytes() as i64;
    if numel < 0 || numel.checked_mul(elt) != Some(bytes.len() as i64) {
        return bad(format!(
            "a storage of {numel} {kind:?} elements holds {} bytes, not {numel} × {elt}",
            bytes.len()
        ));
    }
    if size.len() != stride.len() || size.iter().chain(stride).any(|d| *d < 0) || offset < 0 {
        return bad(format!("tensor size {size:?} / stride {stride:?} / offset {offset}"));
    }
    // Every count from the pickle is checked in i64: a size or stride near 2⁶³ is an error, not
    // an overflow.
    let overflow = || bad(format!("tensor size {size:?} / stride {stride:?} overflow"));
    let mut last = offset;
    let mut elements: i64 = 1;
    for (n, s) in size.iter().zip(stride) {
        let Some(reach) = (n - 1).max(0).checked_mul(*s) else { return overflow() };
        let Some(l) = last.checked_add(reach) else { return overflow() };
        let Some(e) = elements.checked_mul(*n) else { return overflow() };
        (last, elements) = (l, e);
    }
    if size.iter().all(|n| *n > 0) && last >= numel {
        return bad(format!(
            "tensor size {size:?}, stride {stride:?}, offset {offset} reach past its storage of \
             {numel} elements"
        ));
    }
    let flat = Tensor::f_from_data_size(bytes, &[numel], kind).map_err(|e| bad_tch(&e))?;
    let view = flat.f_as_strided(size, stride, offset).map_err(|e| bad_tch(&e))?;
    // A view with more elements than its storage repeats them (stride 0): it stays a view, so
    // a header claiming 2⁴⁰ repeats allocates nothing (shapes are checked against the model
    // before any tensor is copied).
    if elements > numel {
        return Ok(view);
    }
    view.f_contiguous().map_err(|e| bad_tch(&e))
}

fn bad_tch(e: &tch::TchError) -> MachineError {
    MachineError::Bad(format!("libtorch: {e}"))
}
