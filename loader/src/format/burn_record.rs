//! Records written by burn ≤ 0.21's recorders (burn 0.22 has none left): `NamedMpkFileRecorder`
//! (`.mpk`: MessagePack with field names), `NamedMpkGzFileRecorder` (the same, gzip),
//! `PrettyJsonFileRecorder` / `JsonGzFileRecorder` (JSON), recognised by content.
//!
//! A record is `{metadata: {float, int, format, version, settings}, item: <the module's record>}`;
//! the item mirrors the module: a struct is a map of its fields, a `Vec` an array, a constant
//! `nil`, and every tensor a `ParamSerde {id, param}` whose `param` is burn's `TensorData`
//! (`{bytes, shape, dtype}`, burn ≥ 0.14) or the older `DataSerialize` (`{value, shape}`, values
//! in the record's float or int precision). Its keys are burn's own paths
//! (`blocks.0.linear.weight`), as a burnpack's are.
//!
//! MessagePack is walked with the `rmp` crate's decoding functions over a buffered reader that
//! counts its position, so a `TensorData`'s `bytes` (a MessagePack `bin`) are not read at all:
//! they stay a span of the file, read when the plan wants them. Compressed records are
//! decompressed (with `flate2`) into memory first. `BinFileRecorder`'s bincode carries no field
//! names: [`super::burn_bincode`] finds its tensors by position, which a load names by the
//! model's parameters.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use super::{DType, TensorEntry};
use crate::error::{Error, Result};
use crate::source::bytes::{ByteSource, LocalFile};

/// How a burn record is encoded, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// Named MessagePack (`.mpk`).
    MessagePack,
    /// JSON (`.json`).
    Json,
    /// bincode (`.bin`).
    Bincode,
}

/// What a burn record's (decompressed) first bytes say it is.
pub(crate) fn encoding(head: &[u8]) -> Option<Encoding> {
    // Named MessagePack: a small map (`metadata`, `item` and a marker field) whose first key
    // is `metadata`.
    if let [0x82..=0x8f, rest @ ..] = head
        && rest.starts_with(b"\xa8metadata")
    {
        return Some(Encoding::MessagePack);
    }
    // JSON: `{"metadata": {"float": …` (a shard index opens with `"metadata"` too, but holds
    // `total_size` there).
    let mut text = head.trim_ascii_start();
    for token in [&b"{"[..], b"\"metadata\"", b":", b"{", b"\"float\""] {
        match text.strip_prefix(token) {
            Some(rest) => text = rest.trim_ascii_start(),
            None => break,
        }
        if token == b"\"float\"" {
            return Some(Encoding::Json);
        }
    }
    // bincode's metadata: the float and int type names (`f32`, `half::binary16::f16`, `i64`)
    // as length-prefixed strings.
    let text = |at: usize| -> Option<(&[u8], usize)> {
        let len = *head.get(at)? as usize;
        Some((head.get(at + 1..at + 1 + len)?, at + 1 + len))
    };
    let (float, next) = text(0)?;
    let (int, _) = text(next)?;
    let float_names = [&b"f32"[..], b"f64", b"f16", b"bf16"];
    let int_names = [&b"i64"[..], b"i32", b"i16", b"i8"];
    (float_names.iter().any(|n| float.ends_with(n)) && int_names.iter().any(|n| int.ends_with(n)))
        .then_some(Encoding::Bincode)
}

/// A value of the record's tree, tensor bytes left where they lie.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// An array of numbers (a shape, old `DataSerialize` values, JSON's bytes).
    Numbers(Vec<f64>),
    /// A MessagePack `bin`: `len` bytes at `offset` of the source.
    Bin {
        offset: u64,
        len: usize,
    },
    Str(String),
    Number(f64),
    Other,
}

impl Node {
    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            // serde's externally tagged unit variant in MessagePack: `{"F32": nil}`.
            Node::Map(fields) if fields.len() == 1 => Some(fields[0].0.clone()),
            _ => None,
        }
    }
}

/// A reader that knows where it is and can skip ahead without reading.
struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

trait Skip: Read {
    fn skip(&mut self, n: u64) -> io::Result<()>;
    fn pos(&self) -> u64;
}

impl Skip for Counted<BufReader<File>> {
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let by = i64::try_from(n).map_err(|_| invalid("a bin longer than the file"))?;
        self.inner.seek_relative(by)?;
        self.pos += n;
        Ok(())
    }

    fn pos(&self) -> u64 {
        self.pos
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn mpk<E: std::fmt::Display>(e: E) -> io::Error {
    invalid(format!("MessagePack: {e}"))
}

/// Nesting deeper than this is not a module record.
const MAX_DEPTH: usize = 128;

/// Read one MessagePack value; `bin` payloads are skipped and kept as spans.
fn read_mpk<R: Skip>(r: &mut R, depth: usize, size: u64) -> io::Result<Node> {
    use rmp::Marker;
    if depth > MAX_DEPTH {
        return Err(invalid("nested deeper than a module record"));
    }
    let marker = rmp::decode::read_marker(r).map_err(|e| mpk(format!("{e:?}")))?;
    fn be<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        r.read_exact(&mut b)?;
        Ok(b)
    }
    let mut len_of = |bytes: usize| -> io::Result<u64> {
        let mut buf = [0u8; 4];
        r.read_exact(&mut buf[4 - bytes..])?;
        Ok(u32::from_be_bytes(buf) as u64)
    };
    let (kind, len) = match marker {
        Marker::Null => return Ok(Node::Other),
        Marker::True | Marker::False => return Ok(Node::Other),
        Marker::FixPos(n) => return Ok(Node::Number(n as f64)),
        Marker::FixNeg(n) => return Ok(Node::Number(n as f64)),
        Marker::U8 => {
            return Ok(Node::Number(be::<1>(r).map(u8::from_be_bytes)? as f64));
        }
        Marker::U16 => {
            return Ok(Node::Number(be::<2>(r).map(u16::from_be_bytes)? as f64));
        }
        Marker::U32 => {
            return Ok(Node::Number(be::<4>(r).map(u32::from_be_bytes)? as f64));
        }
        Marker::U64 => {
            return Ok(Node::Number(be::<8>(r).map(u64::from_be_bytes)? as f64));
        }
        Marker::I8 => {
            return Ok(Node::Number(be::<1>(r).map(i8::from_be_bytes)? as f64));
        }
        Marker::I16 => {
            return Ok(Node::Number(be::<2>(r).map(i16::from_be_bytes)? as f64));
        }
        Marker::I32 => {
            return Ok(Node::Number(be::<4>(r).map(i32::from_be_bytes)? as f64));
        }
        Marker::I64 => {
            return Ok(Node::Number(be::<8>(r).map(i64::from_be_bytes)? as f64));
        }
        Marker::F32 => {
            return Ok(Node::Number(be::<4>(r).map(f32::from_be_bytes)? as f64));
        }
        Marker::F64 => {
            return Ok(Node::Number(be::<8>(r).map(f64::from_be_bytes)? as f64));
        }
        Marker::FixStr(n) => ("str", n as u64),
        Marker::Str8 => ("str", len_of(1)?),
        Marker::Str16 => ("str", len_of(2)?),
        Marker::Str32 => ("str", len_of(4)?),
        Marker::Bin8 => ("bin", len_of(1)?),
        Marker::Bin16 => ("bin", len_of(2)?),
        Marker::Bin32 => ("bin", len_of(4)?),
        Marker::FixArray(n) => ("array", n as u64),
        Marker::Array16 => ("array", len_of(2)?),
        Marker::Array32 => ("array", len_of(4)?),
        Marker::FixMap(n) => ("map", n as u64),
        Marker::Map16 => ("map", len_of(2)?),
        Marker::Map32 => ("map", len_of(4)?),
        other => return Err(mpk(format!("unexpected {other:?}"))),
    };
    // Every element takes at least a byte: a length beyond what is left is damage.
    if len > size.saturating_sub(r.pos()) {
        return Err(invalid(format!(
            "a {kind} of {len} at byte {} runs past the end ({size} bytes)",
            r.pos()
        )));
    }
    match kind {
        "str" => {
            let mut s = vec![0u8; len as usize];
            r.read_exact(&mut s)?;
            String::from_utf8(s)
                .map(Node::Str)
                .map_err(|_| invalid("a key that is not UTF-8"))
        }
        "bin" => {
            let offset = r.pos();
            r.skip(len)?;
            Ok(Node::Bin {
                offset,
                len: len as usize,
            })
        }
        "array" => {
            let mut items = Vec::with_capacity(len.min(1 << 16) as usize);
            for _ in 0..len {
                items.push(read_mpk(r, depth + 1, size)?);
            }
            Ok(numbers_or_array(items))
        }
        _ => {
            let mut fields = Vec::with_capacity(len.min(1 << 16) as usize);
            for _ in 0..len {
                let Node::Str(key) = read_mpk(r, depth + 1, size)? else {
                    return Err(invalid("a map key that is not a string"));
                };
                fields.push((key, read_mpk(r, depth + 1, size)?));
            }
            Ok(Node::Map(fields))
        }
    }
}

fn numbers_or_array(items: Vec<Node>) -> Node {
    if !items.is_empty() && items.iter().all(|n| matches!(n, Node::Number(_))) {
        Node::Numbers(
            items
                .into_iter()
                .map(|n| match n {
                    Node::Number(x) => x,
                    _ => unreachable!("all numbers"),
                })
                .collect(),
        )
    } else {
        Node::Array(items)
    }
}

fn from_json(value: serde_json::Value, depth: usize) -> io::Result<Node> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(invalid("nested deeper than a module record"));
    }
    Ok(match value {
        Value::Null | Value::Bool(_) => Node::Other,
        Value::Number(n) => Node::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Node::Str(s),
        Value::Array(items) => numbers_or_array(
            items
                .into_iter()
                .map(|v| from_json(v, depth + 1))
                .collect::<io::Result<_>>()?,
        ),
        Value::Object(map) => Node::Map(
            map.into_iter()
                .map(|(k, v)| Ok((k, from_json(v, depth + 1)?)))
                .collect::<io::Result<_>>()?,
        ),
    })
}

/// A burn record's metadata and tensors.
pub(crate) struct Record {
    pub metadata: Vec<(String, String)>,
    pub entries: Vec<TensorEntry>,
    /// Keyed by position (bincode stores no names).
    pub positional: bool,
}

/// Open the burn record at `path`, gzipped or not.
pub(crate) fn open(path: &Path) -> Result<Record> {
    let corrupt = |e: io::Error| Error::Corrupt {
        path: path.to_path_buf(),
        format: super::Format::BurnRecord,
        source: Box::new(e),
    };
    let open_err = |source: io::Error| Error::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut head = [0u8; 64];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(open_err)?;
    let head = &head[..n];
    if head.starts_with(&[0x1f, 0x8b]) {
        // Decompressed into an anonymous temporary file (gone when the checkpoint is), so a
        // record of gigabytes costs disk, not memory: its tensors are then spans of that file,
        // read when the plan wants them, as an uncompressed record's are. At most 64 × the
        // file + 1 GiB (what a PyTorch file may expand to as well): a gzip bomb is refused.
        let file = File::open(path).map_err(open_err)?;
        let compressed = file.metadata().map_err(open_err)?.len();
        let limit = compressed.saturating_mul(64).saturating_add(1 << 30);
        let mut out = tempfile::tempfile().map_err(|e| {
            corrupt(io::Error::new(
                e.kind(),
                format!("a temporary file to decompress it into: {e}"),
            ))
        })?;
        let written = io::copy(
            &mut flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 16, file))
                .take(limit + 1),
            &mut out,
        )
        .map_err(corrupt)?;
        if written > limit {
            return Err(corrupt(invalid(format!(
                "it decompresses to more than {limit} bytes (64 × its size + 1 GiB): refused as a \
                 bomb; if it is a real record, decompress it first (`gunzip -k`) and load that"
            ))));
        }
        let inner = LocalFile::from_file(out, path).map_err(open_err)?;
        let head = inner
            .read_at(0, written.min(64) as usize)
            .map_err(corrupt)?;
        return match encoding(&head) {
            Some(Encoding::MessagePack) => {
                let mut r = Counted {
                    inner: BufReader::with_capacity(1 << 16, inner.reopen().map_err(corrupt)?),
                    pos: 0,
                };
                let tree = read_mpk(&mut r, 0, written).map_err(corrupt)?;
                record(tree, Arc::new(inner)).map_err(corrupt)
            }
            Some(Encoding::Json) => {
                let bytes = inner
                    .read_at(0, usize::try_from(written).unwrap_or(usize::MAX))
                    .map_err(corrupt)?;
                let value =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(invalid(e.to_string())))?;
                let tree = from_json(value, 0).map_err(corrupt)?;
                record(tree, Arc::new(Memory(Arc::new(Vec::new())))).map_err(corrupt)
            }
            Some(Encoding::Bincode) => super::burn_bincode::read(Arc::new(inner)).map_err(corrupt),
            None => Err(corrupt(invalid(
                "a gzip file whose content is not a burn record",
            ))),
        };
    }
    match encoding(head) {
        Some(Encoding::MessagePack) => {
            let file = LocalFile::open(path).map_err(open_err)?;
            let size = file.len();
            let mut r = Counted {
                inner: BufReader::with_capacity(1 << 16, File::open(path).map_err(open_err)?),
                pos: 0,
            };
            let tree = read_mpk(&mut r, 0, size).map_err(corrupt)?;
            record(tree, Arc::new(file)).map_err(corrupt)
        }
        Some(Encoding::Json) => {
            let text = std::fs::read(path).map_err(open_err)?;
            let value =
                serde_json::from_slice(&text).map_err(|e| corrupt(invalid(e.to_string())))?;
            let tree = from_json(value, 0).map_err(corrupt)?;
            record(tree, Arc::new(Memory(Arc::new(Vec::new())))).map_err(corrupt)
        }
        Some(Encoding::Bincode) => {
            let file = LocalFile::open(path).map_err(open_err)?;
            super::burn_bincode::read(Arc::new(file)).map_err(corrupt)
        }
        None => Err(corrupt(invalid("not a burn record"))),
    }
}

/// Bytes in memory: a decompressed record.
struct Memory(Arc<Vec<u8>>);

impl ByteSource for Memory {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(|_| invalid("offset"))?;
        self.0
            .get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| invalid("a span past the end"))
    }
}

/// The metadata and every tensor of a record's tree.
fn record(tree: Node, source: Arc<dyn ByteSource>) -> io::Result<Record> {
    let metadata: Vec<(String, String)> = match tree.get("metadata") {
        Some(Node::Map(fields)) => fields
            .iter()
            .filter_map(|(k, v)| match v {
                Node::Str(s) => Some((k.clone(), s.clone())),
                _ => None,
            })
            .collect(),
        _ => return Err(invalid("no `metadata` map: not a burn record")),
    };
    let item = tree
        .get("item")
        .ok_or_else(|| invalid("no `item`: not a burn record"))?;
    let float = field(&metadata, "float");
    let int = field(&metadata, "int");
    let mut entries = Vec::new();
    let mut path_stack = Vec::new();
    walk(item, &mut path_stack, &mut entries, &source, (&float, &int))?;
    Ok(Record {
        metadata,
        entries,
        positional: false,
    })
}

fn field(metadata: &[(String, String)], name: &str) -> String {
    metadata
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn walk(
    node: &Node,
    at: &mut Vec<String>,
    out: &mut Vec<TensorEntry>,
    source: &Arc<dyn ByteSource>,
    precision: (&str, &str),
) -> io::Result<()> {
    match node {
        Node::Map(fields) => {
            if let (Some(_), Some(param)) = (node.get("id"), node.get("param")) {
                let key = at.join(".");
                out.push(tensor(&key, param, source, precision)?);
                return Ok(());
            }
            for (name, value) in fields {
                at.push(name.clone());
                walk(value, at, out, source, precision)?;
                at.pop();
            }
        }
        Node::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                at.push(i.to_string());
                walk(value, at, out, source, precision)?;
                at.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// A dtype by burn's name (`F32`) or a Rust type's (`f32`, `half::binary16::f16`).
fn dtype_named(name: &str) -> Option<DType> {
    let name = name.rsplit("::").next().unwrap_or(name);
    Some(match name.to_ascii_lowercase().as_str() {
        "f64" => DType::F64,
        "f32" => DType::F32,
        "f16" => DType::F16,
        "bf16" => DType::BF16,
        "i64" => DType::I64,
        "i32" => DType::I32,
        "i16" => DType::I16,
        "i8" => DType::I8,
        "u64" => DType::U64,
        "u32" => DType::U32,
        "u16" => DType::U16,
        "u8" => DType::U8,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// One `ParamSerde`'s `param`: burn's `TensorData` or the older `DataSerialize`.
fn tensor(
    key: &str,
    param: &Node,
    source: &Arc<dyn ByteSource>,
    (float, _int): (&str, &str),
) -> io::Result<TensorEntry> {
    let shape: Vec<usize> = match param.get("shape") {
        Some(Node::Numbers(dims)) => dims.iter().map(|&d| d as usize).collect(),
        Some(Node::Array(dims)) if dims.is_empty() => Vec::new(),
        _ => return Err(invalid(format!("`{key}` has no shape"))),
    };
    if let Some(bytes) = param.get("bytes") {
        let name = param
            .get("dtype")
            .and_then(Node::text)
            .ok_or_else(|| invalid(format!("`{key}` has no dtype")))?;
        let dtype = dtype_named(&name).ok_or_else(|| {
            invalid(format!(
                "`{key}` has dtype {name}, which burn-pretrain cannot load"
            ))
        })?;
        let entry = match bytes {
            Node::Bin { offset, len } => TensorEntry::in_span(
                key.to_string(),
                shape,
                dtype,
                source.clone(),
                (*offset, *len),
                None,
            ),
            Node::Numbers(values) => {
                let bytes: Vec<u8> = values.iter().map(|&b| b as u8).collect();
                TensorEntry::new(key.to_string(), shape, dtype, move || Ok(bytes.clone()))
            }
            _ => return Err(invalid(format!("`{key}`: bytes of an unknown form"))),
        };
        return Ok(entry);
    }
    if let Some(Node::Numbers(values)) = param.get("value") {
        // burn ≤ 0.13's `DataSerialize`: the values themselves, in the record's precision; the
        // `half` crate serialises an f16 or bf16 as its 16 bits.
        let dtype = dtype_named(float).unwrap_or(DType::F32);
        let bits = matches!(dtype, DType::F16 | DType::BF16);
        if bits
            && values
                .iter()
                .any(|&v| v.fract() != 0.0 || !(0.0..=65535.0).contains(&v))
        {
            return Err(invalid(format!(
                "`{key}`: {float} values that are not 16-bit patterns"
            )));
        }
        let values = values.clone();
        let entry = TensorEntry::new(key.to_string(), shape, dtype, move || {
            Ok(match dtype {
                DType::F16 | DType::BF16 => values
                    .iter()
                    .flat_map(|&v| (v as u16).to_le_bytes())
                    .collect(),
                DType::F64 => values.iter().flat_map(|&v| v.to_le_bytes()).collect(),
                _ => values
                    .iter()
                    .flat_map(|&v| (v as f32).to_le_bytes())
                    .collect(),
            })
        });
        return Ok(entry);
    }
    Err(invalid(format!(
        "`{key}`: a tensor record of a layout this reader does not know (neither `bytes` nor `value`)"
    )))
}

#[cfg(test)]
mod tests {
    use super::{Encoding, encoding};

    #[test]
    fn records_are_told_from_other_json_and_binaries() {
        let record = br#"{
  "metadata": {
    "float": "f32","#;
        assert_eq!(encoding(record), Some(Encoding::Json));
        let index = br#"{"metadata": {"total_size": 1234}, "weight_map": {}}"#;
        assert_eq!(encoding(index), None);
        assert_eq!(
            encoding(b"\x83\xa8metadata\x85"),
            Some(Encoding::MessagePack)
        );
        assert_eq!(encoding(b"\x03f32\x03i64\x5cburn"), Some(Encoding::Bincode));
        assert_eq!(
            encoding(b"\x13half::binary16::f16\x03i16"),
            Some(Encoding::Bincode)
        );
        assert_eq!(encoding(b"\x08\x00\x00\x00\x00\x00\x00\x00{}"), None);
    }
}
