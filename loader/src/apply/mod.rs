//! Apply: read exactly the planned tensors (neighbours of one file in one read), cast them,
//! split packed ones and lay each out as the model holds it — all before the model is
//! touched; then run the model's mapping in apply mode to put them in.

pub(crate) mod batch;

use std::collections::BTreeSet;

use burn::tensor::TensorData;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::{Convention, DType, Span, TensorEntry};
use crate::layout::{self, Buffer, split, transpose};
use crate::mapping::{Layout, Mapper, Mode, Piece, Pretrainable, Ready, Target};
use crate::plan::{Action, Adapt, Plan};
use crate::source::bytes::{ByteSource, LocalFile};
use crate::view::View;

/// What [`read`] produced: every planned tensor prepared, keyed by model path, and how
/// many bytes of tensor data were taken from the checkpoint for them.
pub(crate) struct Read {
    pub data: Ready,
    pub bytes_read: u64,
    /// Of `bytes_read`, those mapped from their files rather than read (the `mmap` option).
    pub bytes_mapped: u64,
}

/// How [`read`] takes tensors from local files, as the spec asked (see
/// [`Pretrain::with_transposed_views`](crate::Pretrain::with_transposed_views) and
/// [`Pretrain::with_mmap`](crate::Pretrain::with_mmap)); the default reads and lays out
/// everything as the model holds it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadMode {
    /// Transposed 2-D weights read as stored, to be held as transposed views.
    pub views: bool,
    /// Tensors loaded as stored mapped copy-on-write from their file instead of read.
    pub mmap: bool,
}

/// Where one planned tensor's bytes come from.
enum Src<'a> {
    /// A range of a local file: read by positional reads into the buffer it ends in.
    Local(&'a LocalFile, &'a Span),
    /// Bytes already read (a remote range, a compressed or legacy PyTorch storage).
    Read(std::io::Result<Vec<u8>>),
}

/// Read and prepare every tensor the plan loads, keyed by the model path of the
/// parameter it goes to: cast, split when packed, laid out as the model holds it. Any
/// failure is returned before the model is touched.
///
/// Tensors of a local file go into the buffers the model will own with one copy, in parallel:
/// by positional reads when they load as stored, cast, transposed or both; else read whole and
/// converted from there. Other tensors are read first (neighbours of one remote file in one
/// request). Every local file is then asked whether it changed while it was read.
///
/// With `mode.views`, a 2-D tensor that needs only a transpose (and maybe a cast) is read as
/// stored and listed in [`Ready::views`]; with `mode.mmap`, a local tensor loaded as stored is
/// mapped rather than read.
pub(crate) fn read(plan: &Plan, view: &View, mode: ReadMode) -> Result<Read> {
    let ReadMode { views, mmap } = mode;
    let mapped = std::sync::atomic::AtomicU64::new(0);
    let mmap = mmap.then_some(&mapped);
    let loads: Vec<_> = plan
        .items
        .iter()
        .filter_map(|item| match &item.action {
            Action::Load { index, cast, adapt } => {
                Some((item, &view.entries[*index].entry, cast, adapt))
            }
            _ => None,
        })
        .collect();
    fn local(entry: &TensorEntry) -> Option<(&LocalFile, &Span)> {
        let span = entry.span()?;
        Some((span.source.local()?, span))
    }
    let remote: Vec<&TensorEntry> = loads
        .iter()
        .map(|(_, entry, ..)| *entry)
        .filter(|entry| local(entry).is_none())
        .collect();
    // Each local file once, to be asked whether it changed once everything is read.
    let mut seen = BTreeSet::new();
    let files: Vec<&LocalFile> = loads
        .iter()
        .filter_map(|(_, entry, ..)| local(entry).map(|(file, _)| file))
        .filter(|file| seen.insert(std::ptr::from_ref(*file) as usize))
        .collect();
    let (mut read, mut bytes_read) = batch::read_many(&remote);
    let mut read = read.drain(..);
    let sources: Vec<Src> = loads
        .iter()
        .map(|(_, entry, ..)| match local(entry) {
            Some((map, span)) => {
                bytes_read += span.len as u64;
                Src::Local(map, span)
            }
            None => Src::Read(
                read.next()
                    .unwrap_or_else(|| Err(std::io::Error::other("not read"))),
            ),
        })
        .collect();
    // Each tensor's parts by model path, and whether they are kept as stored for views.
    type Parts = (Vec<(String, TensorData)>, bool);
    let prepared: Vec<Result<Parts>> = loads
        .into_par_iter()
        .zip(sources.into_par_iter())
        .map(|((item, entry, cast, adapt), src)| {
            let to = cast.map(|(_, to)| to);
            let mut as_view = false;
            let result = match src {
                Src::Local(map, span)
                    if let Some(piece) = plain_copy(&item.target, entry, to, adapt.as_ref()) =>
                {
                    read_copy(map, span, entry, piece, mmap)
                }
                Src::Local(map, span)
                    if let Some((piece, to)) =
                        plain_cast(&item.target, entry, to, adapt.as_ref()) =>
                {
                    read_converted(map, span, entry, piece, to, false)
                }
                Src::Local(map, span)
                    if let Some((piece, to)) =
                        plain_transpose(&item.target, entry, to, adapt.as_ref()) =>
                {
                    // As a view: read as stored, as a plain copy or cast would be.
                    as_view = views;
                    match (views, to == entry.dtype()) {
                        (false, _) => read_converted(map, span, entry, piece, to, true),
                        (true, true) => read_copy(map, span, entry, piece, mmap),
                        (true, false) => read_converted(map, span, entry, piece, to, false),
                    }
                }
                // A tensor that is split, adapted, or cast by burn's element-wise conversion:
                // read whole, checked, then converted (its bytes dropped once it is done).
                Src::Local(file, span) => file.read_at(span.offset, span.len).and_then(|bytes| {
                    span.verify(&bytes)
                        .and_then(|()| prepare(&item.target, entry, to, adapt.as_ref(), &bytes))
                }),
                Src::Read(bytes) => {
                    bytes.and_then(|bytes| prepare(&item.target, entry, to, adapt.as_ref(), &bytes))
                }
            };
            result
                .map(|parts| (parts, as_view))
                .map_err(|e| Error::TensorData {
                    path: entry.file().to_path_buf(),
                    key: entry.key().to_string(),
                    source: e,
                })
        })
        .collect();
    // A file truncated or rewritten in place while it was read may have handed out short
    // reads or a mix of old and new bytes: caught here, before the model sees any of them,
    // and named as the cause of whatever a tensor's read made of it (past the end, a CRC).
    for file in files {
        file.unchanged().map_err(|source| Error::Changed {
            path: file.path().to_path_buf(),
            source,
        })?;
    }
    let mut data = Ready::default();
    for prepared in prepared {
        let (parts, as_view) = prepared?;
        if as_view {
            data.views
                .extend(parts.iter().map(|(path, _)| path.clone()));
        }
        data.tensors.extend(parts);
    }
    Ok(Read {
        data,
        bytes_read,
        bytes_mapped: mapped.into_inner(),
    })
}

/// The one piece a tensor loads into as stored — no adaptation, cast, split or transpose —
/// or `None` when it needs a conversion.
fn plain_copy<'a>(
    target: &'a Target,
    entry: &TensorEntry,
    cast: Option<DType>,
    adapt: Option<&Adapt>,
) -> Option<&'a Piece> {
    let piece = single(target)?;
    let transposed = matches!(piece.layout, Layout::Transposed) && entry.shape().len() == 2;
    (adapt.is_none() && cast.is_none_or(|to| to == entry.dtype()) && !transposed).then_some(piece)
}

/// The one piece of a target that is not packed.
fn single(target: &Target) -> Option<&Piece> {
    match target.pieces.as_slice() {
        [piece] if !target.is_packed() => Some(piece),
        _ => None,
    }
}

/// The one piece a tensor loads into with only a cast (one [`layout::fast_cast`] does), and
/// the type it is cast to; `None` otherwise.
fn plain_cast<'a>(
    target: &'a Target,
    entry: &TensorEntry,
    cast: Option<DType>,
    adapt: Option<&Adapt>,
) -> Option<(&'a Piece, DType)> {
    let to = cast.filter(|to| *to != entry.dtype())?;
    let piece = plain_copy(target, entry, None, adapt)?;
    layout::fast_cast(entry.dtype().to_burn_dtype(), to.to_burn_dtype()).then_some((piece, to))
}

/// The one piece a 2-D tensor loads into with only a transpose (a Linear's `[out, in]` as
/// burn's `[in, out]`), maybe cast on the way (by [`layout::fast_cast`]), and the type it
/// ends in; `None` otherwise.
fn plain_transpose<'a>(
    target: &'a Target,
    entry: &TensorEntry,
    cast: Option<DType>,
    adapt: Option<&Adapt>,
) -> Option<(&'a Piece, DType)> {
    let piece = single(target)?;
    let transposed = matches!(piece.layout, Layout::Transposed) && entry.shape().len() == 2;
    // Booleans keep the copy path, whose check names the element that is neither 0 nor 1.
    let plain = entry.dtype() != DType::Bool && adapt.is_none();
    let to = cast.unwrap_or(entry.dtype());
    let castable =
        to == entry.dtype() || layout::fast_cast(entry.dtype().to_burn_dtype(), to.to_burn_dtype());
    (transposed && plain && castable).then_some((piece, to))
}

/// A tensor that needs only a cast, a (2-D) transpose or both: positional reads of its file
/// into small buffers that stay in cache, each converted on into the buffer the model will own
/// ([`Buffer::cast_read`]; for a transpose, blocks of its rows, cast there if need be and
/// scattered into their strip: [`Buffer::transposed_read`]), the CRC-32 computed on each
/// piece as it is read.
fn read_converted(
    map: &LocalFile,
    span: &Span,
    entry: &TensorEntry,
    piece: &Piece,
    to: DType,
    transpose: bool,
) -> std::io::Result<Vec<(String, TensorData)>> {
    let (from, to) = (entry.dtype().to_burn_dtype(), to.to_burn_dtype());
    expect_len(entry, span)?;
    let crc = Crc::new(span);
    let read = crc_read(map, span, &crc);
    let (out, shape) = if transpose {
        let (rows, cols) = (entry.shape()[0], entry.shape()[1]);
        let out = if from == to {
            Buffer::transposed_read(rows, cols, from.size(), &read)?
        } else {
            Buffer::transposed_cast_read(rows, cols, from, to, &read)?
        };
        (out, vec![cols, rows])
    } else {
        (
            Buffer::cast_read(span.len, from, to, &read)?,
            entry.shape().to_vec(),
        )
    };
    crc.verify()?;
    Ok(vec![(piece.model_path.clone(), out.into_data(shape, to))])
}

/// The [`layout::PieceReader`] of a stored range: positional reads of its file, each piece
/// handed to `crc` as it lands.
fn crc_read<'r>(
    map: &'r LocalFile,
    span: &'r Span,
    crc: &'r Crc<'_>,
) -> impl for<'a> Fn(usize, &'a mut [std::mem::MaybeUninit<u8>]) -> std::io::Result<&'a [u8]> + Sync + 'r
{
    move |at, buffer| {
        let bytes = map.read_into_uninit(span.offset + at as u64, buffer)?;
        crc.record(at, bytes);
        Ok(&*bytes)
    }
}

/// The error of a stored range whose length is not its tensor's.
fn expect_len(entry: &TensorEntry, span: &Span) -> std::io::Result<()> {
    let expected = entry.byte_len()?;
    if expected == span.len {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("expected {expected} bytes, the file holds {}", span.len),
    ))
}

/// A tensor that needs no conversion, read from its file straight into the buffer the model
/// will own (positional reads of 1 MiB pieces, in parallel), its CRC-32 computed on each piece
/// as it lands. With `mmap`, the file's range is mapped as that buffer instead where it can be
/// (see [`LocalFile::mapped`]; its CRC-32 and a bool's values still checked, reading the mapped
/// pages), its bytes counted there.
fn read_copy(
    map: &LocalFile,
    span: &Span,
    entry: &TensorEntry,
    piece: &Piece,
    mmap: Option<&std::sync::atomic::AtomicU64>,
) -> std::io::Result<Vec<(String, TensorData)>> {
    let dtype = entry.dtype().to_burn_dtype();
    let elements = entry.num_elements();
    expect_len(entry, span)?;
    let crc = Crc::new(span);
    if let Some(mapped) = mmap
        && let Some(range) = map.mapped(span.offset, span.len, dtype.size())?
    {
        crc.record(0, range.bytes());
        crc.verify()?;
        entry.check(range.bytes())?;
        mapped.fetch_add(span.len as u64, std::sync::atomic::Ordering::Relaxed);
        let data = TensorData::from_bytes(range.into_bytes(), entry.shape().to_vec(), dtype);
        return Ok(vec![(piece.model_path.clone(), data)]);
    }
    // SAFETY: the chunks tile the buffer, and `read_into_uninit` fills each one whole or
    // returns the `Err` that ends the fill.
    #[allow(unsafe_code)]
    let mut out = unsafe {
        Buffer::filled(dtype.size(), elements, |bytes| {
            bytes
                .par_chunks_mut(layout::CHUNK)
                .enumerate()
                .try_for_each(|(i, piece)| {
                    let at = i * layout::CHUNK;
                    crc.record(at, map.read_into_uninit(span.offset + at as u64, piece)?);
                    Ok::<_, std::io::Error>(())
                })
        })
    }?;
    crc.verify()?;
    entry.check(out.bytes_mut())?;
    Ok(vec![(
        piece.model_path.clone(),
        out.into_data(entry.shape().to_vec(), dtype),
    )])
}

/// A stored range's CRC-32 check, computed piece by piece as the pieces are read or copied
/// (while they are in cache), in any order and on any thread, then combined in order.
struct Crc<'a> {
    span: &'a Span,
    pieces: std::sync::Mutex<Vec<(usize, usize, crc32fast::Hasher)>>,
}

impl<'a> Crc<'a> {
    fn new(span: &'a Span) -> Self {
        Self {
            span,
            pieces: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// `piece`, the range's bytes from `at` on, has been read.
    fn record(&self, at: usize, piece: &[u8]) {
        if self.span.crc32.is_none() {
            return;
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(piece);
        if let Ok(mut pieces) = self.pieces.lock() {
            pieces.push((at, piece.len(), hasher));
        }
    }

    /// `Ok` if the pieces read, which must tile the range, match the recorded CRC-32 (or none
    /// is recorded).
    fn verify(&self) -> std::io::Result<()> {
        let Some(expected) = self.span.crc32 else {
            return Ok(());
        };
        let mut pieces = self
            .pieces
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        pieces.sort_by_key(|(at, ..)| *at);
        let mut next = 0;
        let tiled = pieces.iter().all(|(at, len, _)| {
            let ok = *at == next;
            next = at + len;
            ok
        }) && next == self.span.len;
        if !tiled {
            return Err(std::io::Error::other(
                "the pieces read do not cover the stored range (a bug: please report it)",
            ));
        }
        let found = crate::format::combined_crc32(pieces.into_iter().map(|(.., h)| h));
        crate::format::crc32_is(found, expected)
    }
}

/// One planned tensor from its stored bytes: checked, adapted or cast, split when packed,
/// laid out as the model holds it.
fn prepare(
    target: &Target,
    entry: &TensorEntry,
    cast: Option<DType>,
    adapt: Option<&Adapt>,
    bytes: &[u8],
) -> std::io::Result<Vec<(String, TensorData)>> {
    entry.check(bytes)?;
    let from = entry.dtype().to_burn_dtype();
    let shape = entry.shape().to_vec();
    let single = (!target.is_packed()).then(|| &target.pieces[0]);
    let transposed =
        |piece: &Piece, rank: usize| matches!(piece.layout, Layout::Transposed) && rank == 2;
    // The common cases in one pass from the file's bytes: a transpose, a copy, a cast.
    if adapt.is_none()
        && let Some(piece) = single
    {
        let to = cast.map_or(from, DType::to_burn_dtype);
        if transposed(piece, shape.len()) && (to == from || layout::fast_cast(from, to)) {
            let (rows, cols) = (shape[0], shape[1]);
            let out = if to == from {
                Buffer::transposed(bytes, rows, cols, from.size())
            } else {
                Buffer::transposed_cast(bytes, rows, cols, from, to)
            };
            return Ok(vec![(
                piece.model_path.clone(),
                out.into_data(vec![cols, rows], to),
            )]);
        }
        if !transposed(piece, shape.len()) && (to == from || layout::fast_cast(from, to)) {
            let out = if to == from {
                Buffer::copied(bytes, from.size())
            } else {
                Buffer::cast(bytes, from, to)
            };
            return Ok(vec![(piece.model_path.clone(), out.into_data(shape, to))]);
        }
    }
    // Everything else: the whole tensor first (adapted or cast), then split and laid out.
    let mut data = Buffer::copied(bytes, from.size()).into_data(shape.clone(), from);
    if let Some(adapt) = adapt {
        let values = data
            .convert_dtype(burn::tensor::DType::F32)
            .try_into_vec::<f32>()
            .map_err(std::io::Error::other)?;
        data = TensorData::new(
            adapt.adaptation.run(&values, &shape),
            target.checkpoint_shape(),
        )
        .convert_dtype(target.dtype);
    } else if let Some(to) = cast {
        let to = to.to_burn_dtype();
        data = if layout::fast_cast(from, to) {
            Buffer::cast(data.as_bytes(), from, to).into_data(shape, to)
        } else {
            data.convert_dtype(to)
        };
    }
    let parts = if target.is_packed() {
        let sizes: Vec<usize> = target
            .pieces
            .iter()
            .map(|p| p.checkpoint_shape()[target.axis])
            .collect();
        split(&data, target.axis, &sizes)
    } else {
        vec![data]
    };
    Ok(target
        .pieces
        .iter()
        .zip(parts)
        .map(|(piece, part)| {
            let part = if transposed(piece, part.shape().len()) {
                transpose(part)
            } else {
                part
            };
            (piece.model_path.clone(), part)
        })
        .collect())
}

/// How the apply walk of a mapping differed from its plan walk.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Changed {
    /// The walks met different keys at the same place.
    #[error("the plan met `{planned}` where applying met `{applied}`")]
    Key { planned: String, applied: String },
    /// The walks met different numbers of keys.
    #[error("the plan met {planned} checkpoint keys, applying {applied}")]
    Count { planned: usize, applied: usize },
    /// Tensors read for the plan that the apply walk did not take.
    #[error("planned but not applied: {}", .0.join(", "))]
    Untaken(Vec<String>),
}

/// Put `data` (from [`read`]) into a clone of `model` by running its mapping in apply mode.
/// The walk must meet the plan's keys in the plan's order and take every tensor; otherwise
/// the clone is dropped and the first difference returned.
pub(crate) fn apply<M: Pretrainable + Clone>(
    model: &M,
    data: Ready,
    plan: &Plan,
    convention: Convention,
    view_keys: &BTreeSet<String>,
) -> std::result::Result<M, Changed> {
    let mut model = model.clone();
    let mut mapper = Mapper::new(convention, Some(view_keys), Mode::Apply(data));
    model.map_pretrain(&mut mapper);
    let planned = plan.items.iter().map(|i| i.target.key.as_str());
    let walked = mapper.targets.iter().map(|t| t.key.as_str());
    if let Some((p, a)) = planned.clone().zip(walked.clone()).find(|(p, a)| p != a) {
        return Err(Changed::Key {
            planned: p.to_string(),
            applied: a.to_string(),
        });
    }
    let (np, na) = (planned.count(), walked.count());
    if np != na {
        return Err(Changed::Count {
            planned: np,
            applied: na,
        });
    }
    if let Mode::Apply(left) = &mapper.mode
        && !left.tensors.is_empty()
    {
        let mut keys: Vec<String> = left.tensors.keys().cloned().collect();
        keys.sort_unstable();
        return Err(Changed::Untaken(keys));
    }
    Ok(model)
}
