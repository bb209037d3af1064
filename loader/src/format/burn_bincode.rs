//! Records of burn ≤ 0.21's `BinFileRecorder` / `BinGzFileRecorder`: the record serialised by
//! serde into bincode (standard configuration: variable-length integers), decoded here with
//! the `bincode` crate (2.x, the one burn wrote them with).
//!
//! bincode stores no field names: `{metadata: {float, int, format, version, settings}, item}`
//! is five strings and then the module's record, field after field in declaration order, each
//! parameter a `ParamSerde {id, param}` and everything else a byte or two (an `Option`'s tag, a
//! `Vec`'s length, a constant's unit). The parameters are found in that order by their shape —
//! a short identifier string, then burn's `TensorData {bytes, shape, dtype}` (burn ≥ 0.14) or
//! the older `DataSerialize {value, shape}` (0.13), whose lengths must agree — and the bytes in
//! between are skipped; they must add up to the whole file. The tensors come out keyed by
//! position (`#0`, `#1`, …); a load names them by the model's parameters in burn's visiting
//! order, which is its field order, the order the old burn wrote them in
//! ([`Checkpoint::name_by_position`](super::Checkpoint)).

use std::io;
use std::sync::Arc;

use super::burn_record::Record;
use super::{DType, TensorEntry};
use crate::source::bytes::ByteSource;

/// The configuration every burn recorder used, with a limit on what one decoded value may
/// claim (a damaged length is then an error, not an allocation of that size).
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 16 }>()
}

/// A key of a record tensor by position.
pub(crate) fn positional_key(index: usize) -> String {
    format!("#{index}")
}

/// What bincode does not tell: how a parameter is laid out, from the burn version that wrote it.
#[derive(Debug, Clone)]
enum Layout {
    /// burn 0.13's `DataSerialize {value: Vec<E>, shape}`: values in the record's precision.
    Values(DType),
    /// burn ≥ 0.14's `TensorData {bytes, shape, dtype}`, with that release's `DType` variants.
    Data(Vec<Variant>),
}

/// A `DType` variant of some burn release, by its index.
#[derive(Debug, Clone, Copy)]
enum Variant {
    Plain(DType),
    /// `Flex32`: f32 values.
    Flex32,
    /// `Bool` (0.21 adds a `BoolStore` variant index after it).
    Boolean {
        store: bool,
    },
    /// `QFloat(..)`: quantized, refused.
    Quantized,
}

/// The `DType` variants of burn 0.`minor`, in declaration order (bincode writes the index):
/// 0.16 added `U16`, 0.17 `Flex32`, 0.21 a `BoolStore` inside `Bool`.
fn variants(minor: u32) -> Vec<Variant> {
    use DType::*;
    let mut out = vec![Variant::Plain(F64), Variant::Plain(F32)];
    if minor >= 17 {
        out.push(Variant::Flex32);
    }
    out.extend([F16, BF16, I64, I32, I16, I8, U64, U32].map(Variant::Plain));
    if minor >= 16 {
        out.push(Variant::Plain(U16));
    }
    out.push(Variant::Plain(U8));
    out.push(Variant::Boolean { store: minor >= 21 });
    out.push(Variant::Quantized);
    out
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The record's layout from its metadata's `version` (`0.13.2`) and `float` (the record's float
/// type: `f32`, `half::binary16::f16`).
fn layout(version: &str, float: &str) -> io::Result<Layout> {
    let minor = version
        .strip_prefix("0.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| {
            invalid(format!(
                "a bincode record of burn version `{version}`, which this reader does not know"
            ))
        })?;
    Ok(match minor {
        13 => Layout::Values(match float.rsplit("::").next().unwrap_or(float) {
            "f64" => DType::F64,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            _ => DType::F32,
        }),
        14..=21 => Layout::Data(variants(minor)),
        _ => {
            return Err(invalid(format!(
                "a bincode record of burn {version}: bincode records are read for burn 0.13 – 0.21 \
                 (the releases with recorders), whose layouts this reader knows"
            )));
        }
    })
}

/// A cursor over the record's bytes, reading the source a window at a time: the headers it
/// decodes (and the offsets it tries between parameters) are served from the window in memory,
/// one read per window rather than one per value.
struct Cursor<'a> {
    source: &'a dyn ByteSource,
    pos: u64,
    /// Bytes of the source from `cache_at`.
    cache: Vec<u8>,
    cache_at: u64,
}

/// The most one header value takes: an identifier (at most 64 characters, refused beyond) or
/// a variable-length integer.
const HEADER: usize = 256;
/// Bytes read at once.
const WINDOW: usize = 64 << 10;

impl<'a> Cursor<'a> {
    fn new(source: &'a dyn ByteSource, pos: u64) -> Self {
        Self {
            source,
            pos,
            cache: Vec::new(),
            cache_at: 0,
        }
    }

    /// `len` bytes (fewer at the end) from the cursor, read from the source.
    fn window(&self, len: usize) -> io::Result<Vec<u8>> {
        let left = self.source.len().saturating_sub(self.pos);
        let len = len.min(usize::try_from(left).unwrap_or(usize::MAX));
        self.source.read_at(self.pos, len)
    }

    /// The bytes from the cursor on that the window holds: at least `HEADER` of them, or all
    /// that is left of the source.
    fn here(&mut self) -> Option<&[u8]> {
        let end = self.cache_at + self.cache.len() as u64;
        let short = end < self.pos + HEADER as u64 && end < self.source.len();
        if self.pos < self.cache_at || short {
            self.cache = self.window(WINDOW).ok()?;
            self.cache_at = self.pos;
        }
        self.cache
            .get(usize::try_from(self.pos - self.cache_at).ok()?..)
    }

    /// One value bincode decodes from the bytes here; advances past it.
    fn decode<T: bincode::Decode<()>>(&mut self) -> Option<T> {
        let here = self.here()?;
        let (value, used) = bincode::decode_from_slice::<T, _>(here, config()).ok()?;
        self.pos += used as u64;
        Some(value)
    }
}

/// The record's metadata (`float`, `int`, `format`, `version`, `settings`) and where its item
/// starts.
fn metadata(source: &dyn ByteSource) -> io::Result<(Vec<(String, String)>, u64)> {
    let head = source.read_at(0, (source.len().min(4096)) as usize)?;
    let ((float, int, format, version, settings), used): (
        (String, String, String, String, String),
        usize,
    ) = bincode::decode_from_slice(&head, config())
        .map_err(|e| invalid(format!("the record's metadata: {e}")))?;
    let fields = [
        ("float", float),
        ("int", int),
        ("format", format),
        ("version", version),
        ("settings", settings),
    ];
    Ok((
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        used as u64,
    ))
}

/// A parameter identifier: 1 – 64 characters of burn's id alphabets (base-36 ids, UUIDs).
fn identifier(cursor: &mut Cursor<'_>) -> Option<()> {
    let id: String = cursor.decode()?;
    (!id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(())
}

/// A shape: at most 8 dimensions.
fn shape(cursor: &mut Cursor<'_>) -> Option<Vec<usize>> {
    let rank: u64 = cursor.decode()?;
    if rank > 8 {
        return None;
    }
    (0..rank)
        .map(|_| cursor.decode::<u64>().and_then(|d| usize::try_from(d).ok()))
        .collect()
}

/// The `ParamSerde` at the cursor, if there is one: its shape, dtype and where its bytes lie
/// (or the bytes, where they must be decoded); the cursor ends past it.
fn param(cursor: &mut Cursor<'_>, layout: &Layout) -> Option<(Vec<usize>, DType, Bytes)> {
    identifier(cursor)?;
    let len: u64 = cursor.decode()?;
    match layout {
        Layout::Data(variants) => {
            let at = cursor.pos;
            if len > cursor.source.len().saturating_sub(at) {
                return None;
            }
            cursor.pos += len;
            let shape = shape(cursor)?;
            let index: u32 = cursor.decode()?;
            let dtype = match *variants.get(index as usize)? {
                Variant::Plain(dtype) => dtype,
                Variant::Flex32 => DType::F32,
                Variant::Boolean { store } => {
                    if store {
                        cursor.decode::<u32>()?;
                    }
                    DType::Bool
                }
                Variant::Quantized => return None,
            };
            let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
            (elements.checked_mul(dtype.size())? as u64 == len).then_some((
                shape,
                dtype,
                Bytes::Span(at, len as usize),
            ))
        }
        &Layout::Values(dtype) => {
            let at = cursor.pos;
            let n = usize::try_from(len).ok()?;
            let bytes = match dtype {
                // Fixed width: four or eight bytes a value, as stored.
                DType::F32 | DType::F64 => {
                    let width = (n.checked_mul(dtype.size())?) as u64;
                    if width > cursor.source.len().saturating_sub(at) {
                        return None;
                    }
                    cursor.pos += width;
                    Bytes::Span(at, width as usize)
                }
                // `half` serialises an f16 / bf16 as its 16 bits, which bincode writes as a
                // variable-length integer: decoded one by one.
                _ => {
                    if n as u64 > cursor.source.len().saturating_sub(at) {
                        return None;
                    }
                    let window = cursor.window(n.checked_mul(3)?).ok()?;
                    let mut used = 0;
                    let mut out = Vec::with_capacity(n * 2);
                    for _ in 0..n {
                        let (bits, k): (u16, usize) =
                            bincode::decode_from_slice(window.get(used..)?, config()).ok()?;
                        used += k;
                        out.extend_from_slice(&bits.to_le_bytes());
                    }
                    cursor.pos += used as u64;
                    Bytes::Decoded(out)
                }
            };
            let shape = shape(cursor)?;
            let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
            (elements == n).then_some((shape, dtype, bytes))
        }
    }
}

/// Where a tensor's bytes are.
enum Bytes {
    /// A range of the source, as stored.
    Span(u64, usize),
    /// Decoded from variable-length integers.
    Decoded(Vec<u8>),
}

/// The metadata and the tensors, by position, of the bincode record in `source`.
pub(crate) fn read(source: Arc<dyn ByteSource>) -> io::Result<Record> {
    let (metadata, start) = metadata(&*source)?;
    let field = |name: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let layout = layout(field("version"), field("float"))?;
    let end = source.len();
    let mut cursor = Cursor::new(&*source, start);
    let mut entries = Vec::new();
    // Bytes skipped between parameters: tags, lengths, a unit per constant field (a byte each).
    // A module with thousands of constant fields in a row is not a module; the limit keeps a
    // file that is no record from being tried at every offset.
    let mut skipped = 0usize;
    const MAX_GAP: usize = 4096;
    while cursor.pos < end {
        let at = cursor.pos;
        match param(&mut cursor, &layout) {
            Some((shape, dtype, bytes)) => {
                skipped = 0;
                let key = positional_key(entries.len());
                entries.push(match bytes {
                    Bytes::Span(offset, len) => {
                        TensorEntry::in_span(key, shape, dtype, source.clone(), (offset, len), None)
                    }
                    Bytes::Decoded(bytes) => {
                        TensorEntry::new(key, shape, dtype, move || Ok(bytes.clone()))
                    }
                });
            }
            None => {
                cursor.pos = at + 1;
                skipped += 1;
                if skipped > MAX_GAP {
                    return Err(invalid(format!(
                        "no parameter record in the {MAX_GAP} bytes from offset {} (after {} \
                         tensors): not a module record of burn {} this reader can follow",
                        at + 1 - MAX_GAP as u64,
                        entries.len(),
                        field("version")
                    )));
                }
            }
        }
    }
    if entries.is_empty() {
        return Err(invalid("a bincode burn record without any tensor"));
    }
    Ok(Record {
        metadata,
        entries,
        positional: true,
    })
}
