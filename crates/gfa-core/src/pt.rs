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
//! Why not libtorch's own unpickler: the `tch` crate does not expose `torch::pickle_load`
//! (only TorchScript's `torch::jit::load` and the C++ `torch::load` archives), so using it would
//! mean a C++ shim compiled against libtorch; and it rejects checkpoints holding Python objects
//! it does not know, where a state dict under `"state_dict"` beside an `argparse.Namespace` is
//! the common case. Reading here also lets every unsupported file be named precisely: the legacy
//! (pre-1.6) format, TorchScript archives, plain pickles.
use std::collections::HashMap;
use std::io::Read;
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
        "{path} is in the legacy (pre-zip) torch.save format, which gfa does not read; re-save \
         it with PyTorch 1.6 or later, which writes the zip format: \
         `torch.save(torch.load(\"{path}\", map_location=\"cpu\"), \"new.pt\")`"
    )]
    Legacy { path: PathBuf },
    #[error(
        "{path} is a TorchScript archive (torch.jit.save: it has {member}), not a torch.save \
         file; save the weights with `torch.save(torch.jit.load(\"{path}\").state_dict(), \
         \"weights.pt\")`"
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
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// Reads a `torch.save` file into a [`Value`] tree, tensors on the CPU (contiguous, the dtype
/// they were saved with).
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
    let head = &head[..got];
    if !head.starts_with(ZIP_MAGIC) {
        return Err(if head.starts_with(LEGACY_MAGIC) {
            PtError::Legacy { path: path.to_path_buf() }
        } else if head.first() == Some(&0x80) {
            PtError::NotTorchSave {
                path: path.to_path_buf(),
                reason: "it is a plain pickle (no tensor storages); save the state dict with \
                         torch.save"
                    .into(),
            }
        } else {
            PtError::NotTorchSave {
                path: path.to_path_buf(),
                reason: "it is neither a zip archive (PyTorch ≥ 1.6) nor a legacy pickle; \
                         gfa imports what torch.save(model.state_dict(), \"file.pt\") writes"
                    .into(),
            }
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
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
    let mut storages = HashMap::new();
    let value = Machine::new(&pickle)
        .run(&mut |key: &str| -> PtResult<Vec<u8>> {
            if let Some(b) = storages.get(key) {
                return Ok(Vec::clone(b));
            }
            let b = member(&format!("{prefix}data/{key}"))?;
            storages.insert(key.to_string(), b.clone());
            Ok(b)
        })
        .map_err(|e| match e {
            MachineError::Pt(e) => e,
            MachineError::Bad(reason) => corrupt(reason),
            MachineError::Unsupported(reason) => {
                PtError::Unsupported { path: path.to_path_buf(), reason }
            }
        })?;
    Ok(value)
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
    /// Well-formed, but not something gfa imports.
    Unsupported(String),
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
}

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
    fn new(code: &'a [u8]) -> Self {
        Self { code, pos: 0, arena: Vec::new(), stack: Vec::new(), memo: HashMap::new() }
    }

    fn take(&mut self, n: usize) -> MResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.code.len());
        let Some(end) = end else { return bad("the pickle ends in the middle of an opcode") };
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
            return bad("unterminated text argument");
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
    fn call(
        &mut self,
        callable: usize,
        args: usize,
        storage: &mut impl FnMut(&str) -> PtResult<Vec<u8>>,
    ) -> MResult<Obj> {
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
                Ok(Obj::Tensor(tensor_from(&storage(&key)?, kind, numel, offset, &size, &stride)?))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match argv.first().map(|a| &self.arena[*a]) {
                    Some(Obj::Tensor(t)) => Ok(Obj::Tensor(t.shallow_clone())),
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
    fn run(mut self, storage: &mut impl FnMut(&str) -> PtResult<Vec<u8>>) -> MResult<Value> {
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
                    return self.resolve(id, 0);
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
        Ok(Obj::Storage(kind, self.str_of(parts[2])?.to_string(), self.int_of(parts[4])?))
    }

    /// The value tree under `id` (depth-limited: a cycle is an error, not a hang).
    fn resolve(&self, id: usize, depth: usize) -> MResult<Value> {
        if depth > 200 {
            return bad("values nested more than 200 deep (a reference cycle?)");
        }
        let all = |ids: &[usize]| -> MResult<Vec<Value>> {
            ids.iter().map(|i| self.resolve(*i, depth + 1)).collect()
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
            Obj::List(v) => Value::List(all(v)?),
            Obj::Tuple(v) => Value::Tuple(all(v)?),
            Obj::Dict(kv) => Value::Dict(
                kv.iter()
                    .map(|(k, v)| Ok((self.resolve(*k, depth + 1)?, self.resolve(*v, depth + 1)?)))
                    .collect::<MResult<_>>()?,
            ),
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
