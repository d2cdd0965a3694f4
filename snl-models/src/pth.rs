//! PyTorch's zip `torch.save` format (`.pth`, `.pth.tar`, `.pt`), read without trusting it.
//!
//! `data.pkl` is a pickle (protocol 2 to 5) whose tensors name their storage, the member
//! `data/<key>` beside it. Only the opcodes `torch.save` writes are understood, nothing is
//! imported or executed, and every size the pickle or the zip directory declares is checked
//! against what the file can hold before anything is allocated for it: a hostile file is a
//! [`PthError`], never a panic or an aborted allocation. (candle's reader indexes pickled
//! tuples without checking their length and allocates each tensor at the size the pickle
//! declares.)

use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use candle::{DType, Device, Tensor};

/// The largest `data.pkl` read (a ResNet18's is about 15 KB).
const MAX_PICKLE: u64 = 64 << 20;
/// The most a deflated member can expand (deflate's limit is about 1032:1).
const MAX_DEFLATE_RATIO: u64 = 1032;
/// The deepest nesting of pickled objects accepted (a state_dict's is about 6).
const MAX_DEPTH: u16 = 64;
/// The most objects a pickle may push or memoize (a ResNet18 state_dict's pushes a few
/// thousand): each costs about 80 bytes, so a 64 MB pickle of one-byte opcodes would
/// otherwise take 5 GB.
const MAX_OBJECTS: usize = 1 << 20;
/// The most dimensions a tensor may have (PyTorch's own limit is 64).
const MAX_RANK: usize = 64;
/// Dict and list entries added or copied, in all. torch.save memoises every dict, so each
/// SETITEMS batch of 1,000 copies the dict so far: a state dict of n entries costs about
/// n^2 / 2,000, which allows some 90,000 tensors (snl's models have ~150, large language
/// models ~1,000) at 64 MiB of entries at most.
const MAX_COPIED: usize = 4 * MAX_OBJECTS;
/// Longest module or class name of a global (torch.save's are under 100 bytes): each one
/// is copied per use, so a long memoised name would multiply memory by its uses.
const MAX_NAME: usize = 1024;
/// Bytes of storages and of tensors out, in all: 4 bytes per value of the largest model
/// snl builds ([`crate::MAX_MODEL_VALUES`]), for each of the two.
const MAX_TENSOR_BYTES: u64 = 4 * crate::MAX_MODEL_VALUES as u64;

/// Why a zip `torch.save` file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PthError {
    #[error("not a readable zip archive: {0}")]
    Zip(String),
    #[error("no data.pkl in the archive, so not a torch.save file")]
    NoPickle,
    #[error("member {member}: {reason}")]
    Member { member: String, reason: String },
    #[error("data.pkl, byte {at}: {reason}")]
    Pickle { at: usize, reason: String },
    #[error("data.pkl holds no dict of tensors (a state_dict)")]
    NoStateDict,
    #[error("tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
}

type Obj = Rc<Node>;

#[derive(Debug, Clone)]
struct Node {
    depth: u16,
    value: Value,
}

#[derive(Debug, Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Obj>),
    List(Vec<Obj>),
    Dict(Vec<(Obj, Obj)>),
    Global(String, String),
    Reduce(Obj, Obj),
    Build(Obj, Obj),
    PersId(Obj),
}

/// A global `module.name`, refused when a name is longer than [`MAX_NAME`].
fn global(module: &str, name: &str) -> Step<Obj> {
    if module.len().max(name.len()) > MAX_NAME {
        return Err(format!("a global's module or class name over {MAX_NAME} bytes"));
    }
    Ok(leaf(Value::Global(module.to_owned(), name.to_owned())))
}

fn leaf(value: Value) -> Obj {
    Rc::new(Node { depth: 0, value })
}

/// A pickle machine for the opcodes `torch.save` writes. Memo lookups share objects
/// (`Rc`), so no input makes it copy more than a few times its own length.
struct Machine<'a> {
    data: &'a [u8],
    at: usize,
    stack: Vec<Obj>,
    marks: Vec<usize>,
    memo: HashMap<u32, Obj>,
    /// Entries added to dicts and lists, or copied when a shared one is modified, bounded by
    /// [`MAX_COPIED`] (a BUILD merges a whole dict's entries for 4 bytes of input).
    copied: usize,
    /// Objects pushed so far, bounded by [`MAX_OBJECTS`].
    pushed: usize,
}

type Step<T> = std::result::Result<T, String>;

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("{n} bytes declared, {} left", self.data.len() - self.at))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Step<u64> {
        Ok(self.take(n)?.iter().rev().fold(0, |v, &b| (v << 8) | u64::from(b)))
    }

    fn line(&mut self) -> Step<String> {
        let rest = &self.data[self.at..];
        let end = rest.iter().position(|&b| b == b'\n').ok_or("a line without its end")?;
        self.at += end + 1;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    fn text(&mut self, n: u64) -> Step<Obj> {
        let n = usize::try_from(n).map_err(|_| "a string longer than memory")?;
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| "a string that is not UTF-8")?;
        Ok(leaf(Value::Str(s.to_owned())))
    }

    fn pop(&mut self) -> Step<Obj> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("an object popped past a mark".into());
        }
        self.stack.pop().ok_or_else(|| "the stack is empty".into())
    }

    fn pop_mark(&mut self) -> Step<Vec<Obj>> {
        let mark = self.marks.pop().ok_or("no mark to pop to")?;
        Ok(self.stack.split_off(mark))
    }

    fn node(children: &[&Obj], value: Value) -> Step<Obj> {
        let depth = children.iter().map(|c| c.depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(format!("objects nested more than {MAX_DEPTH} deep"));
        }
        Ok(Rc::new(Node { depth, value }))
    }

    fn push_node(&mut self, children: Vec<Obj>, make: fn(Vec<Obj>) -> Value) -> Step<()> {
        let depth = children.iter().map(|c| c.depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(format!("objects nested more than {MAX_DEPTH} deep"));
        }
        self.stack.push(Rc::new(Node { depth, value: make(children) }));
        Ok(())
    }

    /// Adds `items` (keys and values in turn, for a dict) to the dict or list on top of the stack.
    fn extend_top(&mut self, items: Vec<Obj>) -> Step<()> {
        let len = self.stack.len();
        if len == 0 || self.marks.last().is_some_and(|&m| m >= len) {
            return Err("no dict or list to add to".into());
        }
        let top = &mut self.stack[len - 1];
        let depth = items.iter().map(|c| c.depth).max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(format!("objects nested more than {MAX_DEPTH} deep"));
        }
        self.copied += items.len();
        if Rc::strong_count(top) > 1 {
            self.copied += match &top.value {
                Value::Dict(d) => d.len(),
                Value::List(l) => l.len(),
                _ => 0,
            };
        }
        if self.copied > MAX_COPIED {
            return Err(format!("more than {MAX_COPIED} entries added to or copied within dicts and lists"));
        }
        let node = Rc::make_mut(top);
        node.depth = node.depth.max(depth);
        match &mut node.value {
            Value::Dict(d) => {
                if !items.len().is_multiple_of(2) {
                    return Err("a dict item without its value".into());
                }
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
            }
            Value::List(l) => l.extend(items),
            _ => return Err("items added to something neither a dict nor a list".into()),
        }
        Ok(())
    }

    fn step(&mut self) -> Step<Option<Obj>> {
        let op = self.take(1)?[0];
        match op {
            0x80 => drop(self.take(1)?), // PROTO
            0x95 => drop(self.take(8)?), // FRAME
            b'c' => {
                let (module, name) = (self.line()?, self.line()?);
                self.stack.push(global(&module, &name)?);
            }
            0x93 => {
                let (name, module) = (self.pop()?, self.pop()?);
                let (Value::Str(module), Value::Str(name)) = (&module.value, &name.value) else {
                    return Err("STACK_GLOBAL of something other than two strings".into());
                };
                self.stack.push(global(module, name)?);
            }
            b'q' | b'r' | 0x94 => {
                let id = match op {
                    b'q' => self.uint(1)? as u32,
                    b'r' => self.uint(4)? as u32,
                    _ => self.memo.len() as u32,
                };
                let top = self.stack.last().ok_or("memoising from an empty stack")?.clone();
                self.memo.insert(id, top);
            }
            b'h' | b'j' => {
                let id = if op == b'h' { self.uint(1)? } else { self.uint(4)? } as u32;
                let obj = self.memo.get(&id).ok_or_else(|| format!("memo {id} was never stored"))?.clone();
                self.stack.push(obj);
            }
            b'}' => self.stack.push(leaf(Value::Dict(Vec::new()))),
            b']' => self.stack.push(leaf(Value::List(Vec::new()))),
            b')' => self.stack.push(leaf(Value::Tuple(Vec::new()))),
            b'(' => self.marks.push(self.stack.len()),
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.uint(4)?,
                    0x8c => self.uint(1)?,
                    _ => self.uint(8)?,
                };
                let s = self.text(n)?;
                self.stack.push(s);
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.uint(4)?,
                    b'C' => self.uint(1)?,
                    _ => self.uint(8)?,
                };
                self.take(usize::try_from(n).map_err(|_| "bytes longer than memory")?)?;
                self.stack.push(leaf(Value::Bytes));
            }
            b'J' => {
                let v = self.uint(4)? as u32 as i32;
                self.stack.push(leaf(Value::Int(i64::from(v))));
            }
            b'K' | b'M' => {
                let v = self.uint(if op == b'K' { 1 } else { 2 })?;
                self.stack.push(leaf(Value::Int(v as i64)));
            }
            0x8a => {
                let n = self.uint(1)? as usize;
                if n > 8 {
                    return Err(format!("an integer of {n} bytes"));
                }
                let raw = self.uint(n)?;
                // Two's complement of n bytes, sign-extended.
                let v = if n == 0 { 0 } else { ((raw << (64 - 8 * n)) as i64) >> (64 - 8 * n) };
                self.stack.push(leaf(Value::Int(v)));
            }
            b'G' => {
                self.take(8)?;
                self.stack.push(leaf(Value::Float));
            }
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(items, Value::Tuple)?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = (0..n).map(|_| self.pop()).collect::<Step<Vec<_>>>()?;
                items.reverse();
                self.push_node(items, Value::Tuple)?;
            }
            0x88 | 0x89 => self.stack.push(leaf(Value::Bool)),
            b'N' => self.stack.push(leaf(Value::None)),
            b'Q' => {
                let id = self.pop()?;
                let node = Self::node(&[&id], Value::PersId(id.clone()))?;
                self.stack.push(node);
            }
            b'R' | 0x81 => {
                let (args, callable) = (self.pop()?, self.pop()?);
                let node = match &callable.value {
                    Value::Global(m, c)
                        if m == "collections" && (c == "OrderedDict" || c == "defaultdict") =>
                    {
                        leaf(Value::Dict(Vec::new()))
                    }
                    _ => Self::node(&[&callable, &args], Value::Reduce(callable.clone(), args.clone()))?,
                };
                self.stack.push(node);
            }
            b'b' => {
                let state = self.pop()?;
                if let Value::Dict(items) = &state.value
                    && self.stack.last().is_some_and(|t| matches!(t.value, Value::Dict(_)))
                {
                    let flat = items.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect();
                    return self.extend_top(flat).map(|()| None);
                }
                let obj = self.pop()?;
                let node = Self::node(&[&obj, &state], Value::Build(obj.clone(), state.clone()))?;
                self.stack.push(node);
            }
            b's' => {
                let (v, k) = (self.pop()?, self.pop()?);
                self.extend_top(vec![k, v])?;
            }
            b'a' => {
                let v = self.pop()?;
                self.extend_top(vec![v])?;
            }
            b'u' | b'e' => {
                let items = self.pop_mark()?;
                self.extend_top(items)?;
            }
            b'd' => {
                let items = self.pop_mark()?;
                self.stack.push(leaf(Value::Dict(Vec::new())));
                self.extend_top(items)?;
            }
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(items, Value::List)?;
            }
            b'.' => return self.pop().map(Some),
            other => return Err(format!("opcode 0x{other:02x} is not one torch.save writes")),
        }
        Ok(None)
    }
}

/// Runs the pickle `data` to its STOP and returns the object it built.
fn unpickle(data: &[u8]) -> Result<Obj, PthError> {
    let mut m = Machine {
        data,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copied: 0,
        pushed: 0,
    };
    loop {
        let at = m.at;
        if at == data.len() {
            return Err(PthError::Pickle { at, reason: "ends before its STOP opcode".into() });
        }
        let before = m.stack.len();
        let stepped = m.step();
        m.pushed += m.stack.len().saturating_sub(before);
        if m.pushed > MAX_OBJECTS || m.memo.len() > MAX_OBJECTS {
            let reason = format!("more than {MAX_OBJECTS} objects (no state_dict has so many)");
            return Err(PthError::Pickle { at, reason });
        }
        match stepped {
            Ok(Some(obj)) => return Ok(obj),
            Ok(None) => {}
            Err(reason) => return Err(PthError::Pickle { at, reason }),
        }
    }
}

/// Where a tensor's values are in its storage.
struct Spec {
    dtype: DType,
    key: String,
    numel: u64,
    offset: usize,
    dims: Vec<usize>,
    strides: Vec<usize>,
}

fn uints(obj: &Obj, what: &str) -> Step<Vec<usize>> {
    let Value::Tuple(items) = &obj.value else { return Err(format!("its {what} is not a tuple")) };
    if items.len() > MAX_RANK {
        return Err(format!("its {what} has {} dimensions", items.len()));
    }
    items
        .iter()
        .map(|i| match i.value {
            Value::Int(v) => usize::try_from(v).map_err(|_| format!("its {what} holds {v}")),
            _ => Err(format!("its {what} holds a non-integer")),
        })
        .collect()
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
fn rebuild_args(args: &[Obj]) -> Step<Spec> {
    let [storage, offset, size, stride, ..] = args else {
        return Err(format!("{} arguments to _rebuild_tensor_v2, expected at least 4", args.len()));
    };
    let Value::PersId(id) = &storage.value else { return Err("its storage is not a persistent id".into()) };
    let Value::Tuple(id) = &id.value else { return Err("its storage id is not a tuple".into()) };
    let [tag, class, key, _location, numel] = id.as_slice() else {
        return Err(format!("its storage id has {} fields, expected 5", id.len()));
    };
    let (Value::Str(tag), Value::Global(_, class), Value::Str(key), Value::Int(numel)) =
        (&tag.value, &class.value, &key.value, &numel.value)
    else {
        return Err("its storage id is not (`storage`, type, key, location, size)".into());
    };
    if tag != "storage" {
        return Err(format!("its persistent id is a {tag:?}, not a storage"));
    }
    let dtype = match class.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "ByteStorage" => DType::U8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        other => return Err(format!("storage type {other} is not supported")),
    };
    let numel = u64::try_from(*numel).map_err(|_| format!("its storage holds {numel} values"))?;
    let Value::Int(offset) = offset.value else { return Err("its offset is not an integer".into()) };
    let offset = usize::try_from(offset).map_err(|_| format!("its offset is {offset}"))?;
    let (dims, strides) = (uints(size, "size")?, uints(stride, "stride")?);
    if dims.len() != strides.len() {
        return Err(format!("{} sizes but {} strides", dims.len(), strides.len()));
    }
    Ok(Spec { dtype, key: key.clone(), numel, offset, dims, strides })
}

/// The storage view of a pickled tensor; `None` for anything that is not a tensor.
fn tensor_spec(obj: &Obj) -> Step<Option<Spec>> {
    let Value::Reduce(callable, args) = &obj.value else { return Ok(None) };
    let (Value::Global(module, name), Value::Tuple(args)) = (&callable.value, &args.value) else {
        return Ok(None);
    };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") => rebuild_args(args).map(Some),
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            let data = args.first().ok_or("a parameter without its data")?;
            tensor_spec(data)?.ok_or_else(|| "a parameter whose data is not a tensor".into()).map(Some)
        }
        // `(func, type, func_args, state)`: a tensor subclass.
        ("torch._tensor", "_rebuild_from_type_v2") => match args.as_slice() {
            [func, _, func_args, ..] => match (&func.value, &func_args.value) {
                (Value::Global(m, n), Value::Tuple(a))
                    if m == "torch._utils" && n == "_rebuild_tensor_v2" =>
                {
                    rebuild_args(a).map(Some)
                }
                _ => Err("a tensor subclass not rebuilt from a storage".into()),
            },
            _ => Err(format!("{} arguments to _rebuild_from_type_v2, expected 4", args.len())),
        },
        _ => Ok(None),
    }
}

/// The named tensors of the state_dict in `top`: its `state_dict` entry when that holds
/// tensors (the authors' `{'arch', 'state_dict', 'optimizer'}`), else `top` itself.
fn named_specs(top: &Obj) -> Result<Vec<(String, Spec)>, PthError> {
    let collect = |items: &[(Obj, Obj)]| -> Result<Vec<(String, Spec)>, PthError> {
        let mut out = Vec::new();
        for (k, v) in items {
            let Value::Str(name) = &k.value else { continue };
            match tensor_spec(v) {
                Ok(Some(spec)) => out.push((name.clone(), spec)),
                Ok(None) => {}
                Err(reason) => return Err(PthError::Tensor { name: name.clone(), reason }),
            }
        }
        Ok(out)
    };
    // A TorchScript module's state: BUILD of `__torch__.Module()`.
    let top = match &top.value {
        Value::Build(obj, state) => match &obj.value {
            Value::Reduce(c, _) if matches!(&c.value, Value::Global(m, n) if m == "__torch__" && n == "Module") => {
                state
            }
            _ => top,
        },
        _ => top,
    };
    let Value::Dict(items) = &top.value else { return Err(PthError::NoStateDict) };
    let inner = items.iter().find(|(k, _)| matches!(&k.value, Value::Str(s) if s == "state_dict"));
    if let Some((_, inner)) = inner
        && let Value::Dict(inner) = &inner.value
    {
        let specs = collect(inner)?;
        if !specs.is_empty() {
            return Ok(specs);
        }
    }
    collect(items)
}

/// Reads the whole member `name` after checking that the `need` bytes wanted (or its
/// declared size, if `need` is `None`) fit what `file_len` bytes of archive can hold.
fn read_member<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    need: Option<u64>,
    file_len: u64,
) -> Result<Vec<u8>, PthError> {
    let bad = |reason: String| PthError::Member { member: name.to_owned(), reason };
    let f = zip.by_name(name).map_err(|e| bad(e.to_string()))?;
    let (size, packed) = (f.size(), f.compressed_size());
    let holds = if f.compression() == zip::CompressionMethod::Stored {
        packed
    } else {
        packed.saturating_mul(MAX_DEFLATE_RATIO)
    };
    let need = need.unwrap_or(size);
    if packed > file_len || need > size || need > holds {
        return Err(bad(format!(
            "{need} bytes wanted, but it declares {size} bytes ({packed} stored) in a file of {file_len}"
        )));
    }
    let len = usize::try_from(need).map_err(|_| bad(format!("{need} bytes do not fit in memory")))?;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| bad(format!("{need} bytes do not fit in memory")))?;
    f.take(need).read_to_end(&mut out).map_err(|e| bad(e.to_string()))?;
    if out.len() != len {
        return Err(bad(format!("ends after {} of its {need} bytes", out.len())));
    }
    Ok(out)
}

/// The tensor `spec` describes, from its storage's bytes.
fn materialise(spec: &Spec, storage: &[u8], device: &Device) -> Step<Tensor> {
    let es = spec.dtype.size_in_bytes();
    let count = spec.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("its size overflows")?;
    let numel = storage.len() / es;
    if count > 0 {
        let reach = spec
            .dims
            .iter()
            .zip(&spec.strides)
            .try_fold(spec.offset, |a, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| x.checked_add(a)));
        match reach {
            Some(last) if last < numel => {}
            _ => return Err(format!("its view reaches past the {numel} values of storage {}", spec.key)),
        }
    }
    let mut contiguous = true;
    let mut expect = 1usize;
    for (&d, &s) in spec.dims.iter().zip(&spec.strides).rev() {
        contiguous &= d == 1 || s == expect;
        expect = expect.saturating_mul(d);
    }
    let tensor = if contiguous || count == 0 {
        let start = spec.offset.min(numel) * es;
        let bytes = &storage[start..start + count * es];
        Tensor::from_raw_buffer(bytes, spec.dtype, &spec.dims, device)
    } else {
        let mut out = Vec::new();
        out.try_reserve_exact(count * es).map_err(|_| "it does not fit in memory")?;
        let (mut index, mut pos) = (vec![0usize; spec.dims.len()], spec.offset);
        for _ in 0..count {
            out.extend_from_slice(&storage[pos * es..(pos + 1) * es]);
            for d in (0..spec.dims.len()).rev() {
                if index[d] + 1 < spec.dims[d] {
                    index[d] += 1;
                    pos += spec.strides[d];
                    break;
                }
                pos -= spec.strides[d] * index[d];
                index[d] = 0;
            }
        }
        Tensor::from_raw_buffer(&out, spec.dtype, &spec.dims, device)
    };
    tensor.map_err(|e| e.to_string())
}

/// Reads every tensor of the state_dict in the zip `torch.save` file `file` (`file_len`
/// bytes long), by name, onto `device`.
pub(crate) fn read<R: Read + std::io::Seek>(
    file: R,
    file_len: u64,
    device: &Device,
) -> Result<Vec<(String, Tensor)>, PthError> {
    let mut zip = zip::ZipArchive::new(file).map_err(|e| PthError::Zip(e.to_string()))?;
    // Entries sharing one compressed stream would each inflate it again (torch.save writes
    // every member once).
    if zip.has_overlapping_files().map_err(|e| PthError::Zip(e.to_string()))? {
        return Err(PthError::Zip("members share compressed data, as no torch.save file does".into()));
    }
    let names = zip.file_names().collect::<zip::result::ZipResult<Vec<_>>>();
    let pickle_name = names
        .map_err(|e| PthError::Zip(e.to_string()))?
        .into_iter()
        .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(|n| n.into_owned())
        .ok_or(PthError::NoPickle)?;
    let dir = &pickle_name[..pickle_name.len() - "data.pkl".len()];
    let declared = zip.by_name(&pickle_name).map(|f| f.size()).unwrap_or(0);
    if declared > MAX_PICKLE {
        let reason = format!("declares {declared} bytes, over the {MAX_PICKLE} allowed");
        return Err(PthError::Member { member: pickle_name, reason });
    }
    let pickle = read_member(&mut zip, &pickle_name, None, file_len)?;
    let byteorder = format!("{dir}byteorder");
    if zip.index_for_name(&byteorder).is_some() {
        let order = read_member(&mut zip, &byteorder, None, file_len.min(64))?;
        if order.trim_ascii() != b"little" {
            let reason = "the tensors are big-endian; only little-endian files are read".to_owned();
            return Err(PthError::Member { member: byteorder, reason });
        }
    }
    let specs = named_specs(&unpickle(&pickle)?)?;
    drop(pickle);

    // Every storage once (views share them), and no more values out than the file can hold.
    let mut storages: HashMap<&str, (DType, u64)> = HashMap::new();
    let (mut out_bytes, mut storage_bytes) = (0u64, 0u64);
    let limit = file_len.saturating_mul(MAX_DEFLATE_RATIO).min(MAX_TENSOR_BYTES);
    for (name, s) in &specs {
        let bad = |reason: String| PthError::Tensor { name: name.clone(), reason };
        let es = s.dtype.size_in_bytes() as u64;
        match storages.insert(&s.key, (s.dtype, s.numel)) {
            Some(seen) if seen != (s.dtype, s.numel) => {
                return Err(bad(format!("storage {} is described two different ways", s.key)));
            }
            Some(_) => {}
            None => {
                storage_bytes =
                    s.numel.checked_mul(es).and_then(|b| b.checked_add(storage_bytes)).unwrap_or(u64::MAX)
            }
        }
        let count = s.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64)).unwrap_or(u64::MAX);
        // A view repeating values (a zero stride) would make more bytes than its storage.
        if count > s.numel {
            return Err(bad(format!("a view of {count} values of a storage of {}", s.numel)));
        }
        out_bytes = count.checked_mul(es).and_then(|b| b.checked_add(out_bytes)).unwrap_or(u64::MAX);
        if out_bytes.max(storage_bytes) > limit {
            return Err(bad(format!(
                "the tensors up to it need {} bytes, more than {limit} (a file of {file_len} bytes, at most \
                 {MAX_TENSOR_BYTES})",
                out_bytes.max(storage_bytes)
            )));
        }
    }
    let mut data: HashMap<&str, Vec<u8>> = HashMap::new();
    for (&key, &(dtype, numel)) in &storages {
        let member = format!("{dir}data/{key}");
        let need = numel.saturating_mul(dtype.size_in_bytes() as u64);
        data.insert(key, read_member(&mut zip, &member, Some(need), file_len)?);
    }
    specs
        .iter()
        .map(|(name, spec)| {
            let tensor = materialise(spec, &data[spec.key.as_str()], device)
                .map_err(|reason| PthError::Tensor { name: name.clone(), reason })?;
            Ok((name.clone(), tensor))
        })
        .collect()
}
