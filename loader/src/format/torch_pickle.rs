//! Where each tensor of a PyTorch zip checkpoint lies in its storage: a small walk of
//! `data.pkl` that understands what `torch.save` writes (dicts, lists, `_rebuild_tensor_v2`,
//! persistent storage ids) and nothing more.
//!
//! `pytorch-reader` stays the authority on what a checkpoint holds (keys, shapes, dtypes, its
//! safety limits); it hides where the bytes are. This walk finds that, so a stored entry can be
//! read straight from the file by positional reads. Anything it does not understand makes it give up
//! (`None`), and a tensor it describes differently from `pytorch-reader` is read through
//! `pytorch-reader` instead: the fast path is only ever taken where both agree.

use std::collections::HashMap;

use super::DType;

/// A tensor as a view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StorageView {
    /// The storage's key in the archive (`data/<key>`).
    pub storage: String,
    pub dtype: DType,
    /// First element, in elements of `dtype`.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl StorageView {
    /// Whether the view is the row-major run of elements from `offset` on (strides of
    /// size-one dimensions do not matter).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1usize;
        for (&dim, &step) in self.shape.iter().zip(&self.stride).rev() {
            if dim != 1 && step != expected {
                return false;
            }
            expected = expected.saturating_mul(dim);
        }
        true
    }
}

#[derive(Debug, Clone)]
enum Value {
    Mark,
    None,
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    Storage(String, DType),
    Tensor(StorageView),
    /// Anything else: a float, bytes, an object this walk does not interpret.
    Other,
}

/// Most values cloned (into and out of the memo, or by `DUP`) before the walk gives up: a
/// pickle that copies a structure over and over would otherwise grow exponentially. A state
/// dict costs a few dozen per tensor (each memoised tuple and string); beyond the limit the
/// walk gives up and `pytorch-reader` reads the file.
const MAX_CLONED: usize = 1 << 24;

/// Every tensor of the pickle by its dotted path (dict keys and list indices, as
/// `pytorch-reader` names them), or `None` when the pickle holds anything this walk does
/// not follow.
pub(super) fn storage_views(pickle: &[u8]) -> Option<HashMap<String, StorageView>> {
    let root = run(pickle)?;
    // `pytorch-reader` reads a dict at the root and nothing else; so does this walk.
    if !matches!(root, Value::Dict(_)) {
        return None;
    }
    let mut out = HashMap::new();
    collect(root, &mut Vec::new(), &mut out);
    Some(out)
}

/// How many tensors [`storage_views`] places (for the fuzz target).
pub(crate) fn count_views(pickle: &[u8]) -> Option<usize> {
    storage_views(pickle).map(|views| views.len())
}

fn collect(value: Value, path: &mut Vec<String>, out: &mut HashMap<String, StorageView>) {
    match value {
        Value::Dict(items) => {
            for (key, value) in items {
                let key = match key {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => continue,
                };
                path.push(key);
                collect(value, path, out);
                path.pop();
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, item) in items.into_iter().enumerate() {
                path.push(i.to_string());
                collect(item, path, out);
                path.pop();
            }
        }
        Value::Tensor(view) => {
            out.insert(path.join("."), view);
        }
        _ => {}
    }
}

/// A cursor over the pickle's bytes.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(out)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn le<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn line(&mut self) -> Option<&'a str> {
        let rest = self.bytes.get(self.at..)?;
        let end = rest.iter().position(|&b| b == b'\n')?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).ok()
    }
    fn text(&mut self, n: usize) -> Option<String> {
        std::str::from_utf8(self.take(n)?).ok().map(str::to_string)
    }
}

/// Run the pickle machine to `STOP`; the value left on the stack.
fn run(pickle: &[u8]) -> Option<Value> {
    let mut input = Input {
        bytes: pickle,
        at: 0,
    };
    let mut stack = Stack::default();
    let mut memo: HashMap<u32, (Value, u32)> = HashMap::new();
    let mut cloned = 0usize;
    loop {
        let op = input.u8()?;
        match op {
            b'.' => return stack.pop(),
            0x80 => {
                input.u8()?; // PROTO
            }
            0x95 => {
                input.take(8)?; // FRAME
            }
            b'(' => stack.push(Value::Mark),
            b'N' => stack.push(Value::None),
            0x88 | 0x89 => stack.push(Value::Other), // NEWTRUE / NEWFALSE
            b'K' => stack.push(Value::Int(i64::from(input.u8()?))),
            b'M' => stack.push(Value::Int(i64::from(u16::from_le_bytes(input.le()?)))),
            b'J' => stack.push(Value::Int(i64::from(i32::from_le_bytes(input.le()?)))),
            0x8a => {
                // LONG1: little-endian two's complement of n bytes.
                let n = usize::from(input.u8()?);
                let bytes = input.take(n)?;
                if n > 8 {
                    stack.push(Value::Other);
                } else {
                    let mut value: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        value |= i64::from(b) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        value -= 1i64 << (8 * n);
                    }
                    stack.push(Value::Int(value));
                }
            }
            b'G' => {
                input.take(8)?;
                stack.push(Value::Other);
            }
            b'X' => {
                let n = u32::from_le_bytes(input.le()?) as usize;
                stack.push(Value::Str(input.text(n)?));
            }
            0x8c => {
                let n = usize::from(input.u8()?);
                stack.push(Value::Str(input.text(n)?));
            }
            0x8d => {
                let n = usize::try_from(u64::from_le_bytes(input.le()?)).ok()?;
                stack.push(Value::Str(input.text(n)?));
            }
            b'C' => {
                let n = usize::from(input.u8()?);
                input.take(n)?;
                stack.push(Value::Other);
            }
            b'B' => {
                let n = u32::from_le_bytes(input.le()?) as usize;
                input.take(n)?;
                stack.push(Value::Other);
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b't' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push_nested(Value::Tuple(items), depth)?;
            }
            0x85..=0x87 => {
                let (items, depth) = stack.pop_n(usize::from(op - 0x84))?;
                stack.push_nested(Value::Tuple(items), depth)?;
            }
            b'l' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push_nested(Value::List(items), depth)?;
            }
            b'd' => {
                let (items, depth) = stack.pop_mark()?;
                stack.push_nested(Value::Dict(pairs(items)?), depth)?;
            }
            b'a' => {
                let (item, depth) = stack.pop_entry()?;
                match stack.last_mut(depth)? {
                    Value::List(items) => items.push(item),
                    _ => return None,
                }
            }
            b'e' => {
                let (items, depth) = stack.pop_mark()?;
                match stack.last_mut(depth)? {
                    Value::List(list) => list.extend(items),
                    _ => return None,
                }
            }
            b's' => {
                let (value, value_depth) = stack.pop_entry()?;
                let (key, key_depth) = stack.pop_entry()?;
                match stack.last_mut(value_depth.max(key_depth))? {
                    Value::Dict(dict) => dict.push((key, value)),
                    _ => return None,
                }
            }
            b'u' => {
                let (items, depth) = stack.pop_mark()?;
                let items = pairs(items)?;
                match stack.last_mut(depth)? {
                    Value::Dict(dict) => dict.extend(items),
                    _ => return None,
                }
            }
            b'q' | b'r' | 0x94 => {
                // BINPUT, LONG_BINPUT, MEMOIZE: the top of the stack, copied into the memo.
                let id = match op {
                    b'q' => u32::from(input.u8()?),
                    b'r' => u32::from_le_bytes(input.le()?),
                    _ => u32::try_from(memo.len()).ok()?,
                };
                let top = stack.last_entry()?.clone();
                cloned += size(&top.0);
                if cloned > MAX_CLONED {
                    return None;
                }
                memo.insert(id, top);
            }
            b'h' | b'j' => {
                let id = if op == b'h' {
                    u32::from(input.u8()?)
                } else {
                    u32::from_le_bytes(input.le()?)
                };
                let (value, depth) = memo.get(&id)?.clone();
                cloned += size(&value);
                if cloned > MAX_CLONED {
                    return None;
                }
                stack.push_at(value, depth)?;
            }
            b'c' => {
                let module = input.line()?.to_string();
                let name = input.line()?.to_string();
                stack.push(Value::Global(module, name));
            }
            0x93 => {
                let name = stack.pop()?;
                let module = stack.pop()?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(m, n)),
                    _ => return None,
                }
            }
            b'Q' => {
                let pid = stack.pop()?;
                stack.push(persistent(pid)?);
            }
            b'R' => {
                let args = stack.pop()?;
                let callable = stack.pop()?;
                // A tensor, a storage, an empty OrderedDict or an opaque object: no nesting.
                stack.push(reduce(callable, args)?);
            }
            0x81 => {
                stack.pop()?;
                stack.pop()?;
                stack.push(Value::Other);
            }
            b'b' => {
                // BUILD: an object's state (an OrderedDict's `_metadata`, a tensor's
                // hooks); what this walk keeps is unchanged by it.
                stack.pop()?;
                stack.last_entry()?;
            }
            b'0' => {
                stack.pop()?;
            }
            b'1' => {
                stack.pop_mark()?;
            }
            b'2' => {
                let top = stack.last_entry()?.clone();
                cloned += size(&top.0);
                if cloned > MAX_CLONED {
                    return None;
                }
                stack.push_at(top.0, top.1)?;
            }
            _ => return None,
        }
    }
}

/// The deepest nesting of containers the walk follows (a state dict nests a few levels; each
/// level is a frame of the walks over the result, and of its drop). Deeper, it gives up, and
/// `pytorch-reader` — which refuses more than 1000 levels — reads the file.
const MAX_DEPTH: u32 = 256;

/// The pickle machine's stack: each value with how deeply it nests containers (0 for a leaf
/// or an empty container), kept up to date as items are added, so the limit costs nothing per
/// value.
#[derive(Default)]
struct Stack {
    items: Vec<(Value, u32)>,
}

impl Stack {
    fn push(&mut self, value: Value) {
        self.items.push((value, 0));
    }

    /// Push a value that nests `depth` levels, unless that is too deep.
    fn push_at(&mut self, value: Value, depth: u32) -> Option<()> {
        (depth <= MAX_DEPTH).then(|| self.items.push((value, depth)))
    }

    /// Push a container of items nesting at most `items_depth` levels.
    fn push_nested(&mut self, value: Value, items_depth: u32) -> Option<()> {
        self.push_at(value, items_depth.checked_add(1)?)
    }

    fn pop(&mut self) -> Option<Value> {
        self.pop_entry().map(|(value, _)| value)
    }

    fn pop_entry(&mut self) -> Option<(Value, u32)> {
        self.items.pop()
    }

    fn last_entry(&self) -> Option<&(Value, u32)> {
        self.items.last()
    }

    /// The top value, about to take items nesting `items_depth` levels: its depth grows to
    /// hold them, unless that is too deep.
    fn last_mut(&mut self, items_depth: u32) -> Option<&mut Value> {
        let (value, depth) = self.items.last_mut()?;
        *depth = (*depth).max(items_depth.checked_add(1)?);
        (*depth <= MAX_DEPTH).then_some(value)
    }

    /// The values above the topmost mark (which goes too), and the deepest of them.
    fn pop_mark(&mut self) -> Option<(Vec<Value>, u32)> {
        let at = self
            .items
            .iter()
            .rposition(|(v, _)| matches!(v, Value::Mark))?;
        let items = self.items.split_off(at + 1);
        self.items.pop();
        Some(Self::unzip(items))
    }

    /// The top `n` values, and the deepest of them.
    fn pop_n(&mut self, n: usize) -> Option<(Vec<Value>, u32)> {
        let at = self.items.len().checked_sub(n)?;
        Some(Self::unzip(self.items.split_off(at)))
    }

    fn unzip(items: Vec<(Value, u32)>) -> (Vec<Value>, u32) {
        let depth = items.iter().map(|(_, d)| *d).max().unwrap_or(0);
        (items.into_iter().map(|(v, _)| v).collect(), depth)
    }
}

fn size(value: &Value) -> usize {
    match value {
        Value::Tuple(v) | Value::List(v) => 1 + v.iter().map(size).sum::<usize>(),
        Value::Dict(v) => 1 + v.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>(),
        _ => 1,
    }
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

/// `('storage', torch.FloatStorage, '0', 'cpu', numel)`.
fn persistent(pid: Value) -> Option<Value> {
    let Value::Tuple(fields) = pid else {
        return Some(Value::Other);
    };
    match fields.as_slice() {
        [
            Value::Str(kind),
            Value::Global(_, class),
            Value::Str(key),
            ..,
            // A storage class this walk does not know (complex, quantized): it gives up.
        ] if kind == "storage" => {
            storage_dtype(class).map(|dtype| Value::Storage(key.clone(), dtype))
        }
        _ => Some(Value::Other),
    }
}

fn storage_dtype(class: &str) -> Option<DType> {
    Some(match class {
        "DoubleStorage" => DType::F64,
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}

fn dims(value: &Value) -> Option<Vec<usize>> {
    match value {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::Int(i) => usize::try_from(*i).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn reduce(callable: Value, args: Value) -> Option<Value> {
    let Value::Global(module, name) = callable else {
        return Some(Value::Other);
    };
    let Value::Tuple(args) = args else {
        return Some(Value::Other);
    };
    Some(match (module.as_str(), name.as_str()) {
        // Every other way torch rebuilds a tensor (subclasses, v3 with its dtype argument,
        // quantized, sparse, nested): the walk cannot place it, so it gives up entirely rather
        // than lose a tensor that `pytorch-reader` would see.
        (m, n)
            if (m == "torch" || m.starts_with("torch."))
                && n.starts_with("_rebuild")
                && !matches!(
                    n,
                    "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_parameter"
                ) =>
        {
            return None;
        }
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => match args.as_slice() {
            [
                Value::Storage(storage, dtype),
                Value::Int(offset),
                size,
                stride,
                ..,
            ] => {
                let (Some(shape), Some(stride)) = (dims(size), dims(stride)) else {
                    return None;
                };
                if shape.len() != stride.len() {
                    return None;
                }
                Value::Tensor(StorageView {
                    storage: storage.clone(),
                    dtype: *dtype,
                    offset: usize::try_from(*offset).ok()?,
                    shape,
                    stride,
                })
            }
            _ => Value::Other,
        },
        ("torch._utils", "_rebuild_parameter") => match args.into_iter().next() {
            Some(tensor @ Value::Tensor(_)) => tensor,
            _ => Value::Other,
        },
        ("collections", "OrderedDict") if args.is_empty() => Value::Dict(Vec::new()),
        _ => Value::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_size_one_dims() {
        let view = |shape: Vec<usize>, stride: Vec<usize>| StorageView {
            storage: "0".into(),
            dtype: DType::F32,
            offset: 0,
            shape,
            stride,
        };
        assert!(view(vec![2, 3], vec![3, 1]).is_contiguous());
        assert!(view(vec![2, 1, 3], vec![3, 7, 1]).is_contiguous());
        assert!(!view(vec![2, 3], vec![1, 2]).is_contiguous());
        assert!(view(vec![], vec![]).is_contiguous());
    }

    /// `data.pkl` of a fixture written by torch 2.9 (`tests/fixtures/storage/generate.py`).
    fn fixture_pickle() -> Vec<u8> {
        use std::io::Read;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/storage/views.pth"
        );
        let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
        let name = archive
            .file_names()
            .find(|n| n.as_ref().is_ok_and(|n| n.ends_with("/data.pkl")))
            .unwrap()
            .unwrap()
            .to_string();
        let mut bytes = Vec::new();
        archive
            .by_name(&name)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    }

    #[test]
    fn finds_every_tensor_of_a_real_pickle() {
        let views = storage_views(&fixture_pickle()).unwrap();
        let mut keys: Vec<&str> = views.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "counts",
                "flags",
                "nested.first_half",
                "nested.list.0",
                "nested.list.1",
                "nested.second_half",
                "param",
                "plain",
                "transposed"
            ]
        );
        let t = &views["transposed"];
        assert_eq!(
            (t.shape.as_slice(), t.stride.as_slice()),
            (&[6, 4][..], &[1, 6][..])
        );
        assert!(!t.is_contiguous());
        assert_eq!(views["nested.second_half"].offset, 12);
        assert_eq!(views["nested.list.0"].dtype, DType::F16);
        assert_eq!(views["flags"].dtype, DType::Bool);
    }

    #[test]
    fn damaged_pickles_never_panic() {
        // Every truncation and, at every position, a few byte values: the walk answers
        // (`Some` or `None`), it never panics or loops.
        let pickle = fixture_pickle();
        for end in 0..pickle.len() {
            let _ = storage_views(&pickle[..end]);
        }
        let mut damaged = pickle.clone();
        for at in 0..pickle.len() {
            for value in [0x00, 0x28, 0x2e, 0x71, 0x80, 0xff] {
                damaged[at] = value;
                let _ = storage_views(&damaged);
            }
            damaged[at] = pickle[at];
        }
    }

    /// A state dict `{"a": [[[...]]]}` nested `depth` lists deep, in protocol 2.
    fn nested_pickle(depth: usize) -> Vec<u8> {
        let mut p = b"\x80\x02}X\x01\x00\x00\x00a".to_vec();
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.extend_from_slice(b"s.");
        p
    }

    /// The probe's pickle nested a million lists deep overflowed the stack (the walk over the
    /// result, and its drop, recurse): the walk now gives up past its depth limit, at the
    /// cost of one counter per stack entry; within it, the nesting is followed.
    #[test]
    fn deep_nesting_is_given_up_without_recursing() {
        assert_eq!(storage_views(&nested_pickle(1_000_000)), None);
        assert_eq!(storage_views(&nested_pickle(MAX_DEPTH as usize + 1)), None);
        assert_eq!(
            storage_views(&nested_pickle(MAX_DEPTH as usize - 1)).map(|v| v.len()),
            Some(0)
        );
        // Through the memo and DUP too: a deep value copied keeps its depth.
        let mut p = b"\x80\x02}X\x01\x00\x00\x00a".to_vec();
        p.extend(std::iter::repeat_n(b']', 200));
        p.extend(std::iter::repeat_n(b'a', 199));
        p.extend_from_slice(b"q\x010]h\x01a]h\x01aa"); // [deep, [deep]]: 201 levels
        p.extend_from_slice(b"s.");
        assert!(storage_views(&p).is_some());
        let mut q = b"\x80\x02}X\x01\x00\x00\x00a".to_vec();
        q.extend(std::iter::repeat_n(b']', 250));
        q.extend(std::iter::repeat_n(b'a', 249));
        // Ten more levels, each the copy of the last wrapped once more.
        for _ in 0..10 {
            q.extend_from_slice(b"q\x010]h\x01a");
        }
        q.extend_from_slice(b"s.");
        assert_eq!(storage_views(&q), None);
    }

    #[test]
    fn gives_up_on_what_it_does_not_know() {
        assert_eq!(storage_views(b"\x80\x02}q\x00\xff."), None);
        assert_eq!(storage_views(b""), None);
        // An empty dict is understood: no tensors.
        assert_eq!(storage_views(b"\x80\x02}q\x00.").map(|m| m.len()), Some(0));
    }
}
