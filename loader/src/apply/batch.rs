//! Reading many tensors at once: tensors that are byte ranges of one source (safetensors)
//! are sorted by offset and neighbours are read together — one request for a run of tensors
//! when the source is remote, several requests in flight at once — then cut apart.
//! Everything else reads tensor by tensor.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use crate::format::{Span, TensorEntry};
use crate::source::bytes::read_ranges;

/// The most bytes one coalesced read may cover.
const MAX_RUN: u64 = 64 << 20;

/// The bytes of each entry, in the order given, and how many bytes were read for them
/// (with the holes a coalesced read spans).
pub(crate) fn read_many(entries: &[&TensorEntry]) -> (Vec<io::Result<Vec<u8>>>, u64) {
    let mut bytes_read = 0u64;
    let mut out: Vec<Option<io::Result<Vec<u8>>>> = (0..entries.len()).map(|_| None).collect();
    // Group the spanned entries by source (the same Arc), keeping their positions.
    let mut groups: HashMap<*const (), Vec<(usize, &Span)>> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        match entry.span() {
            Some(span) => groups
                .entry(Arc::as_ptr(&span.source).cast::<()>())
                .or_default()
                .push((i, span)),
            None => {
                bytes_read += entry.byte_len().unwrap_or(0) as u64;
                out[i] = Some(entry.read());
            }
        }
    }
    for mut spans in groups.into_values() {
        spans.sort_by_key(|(_, span)| span.offset);
        let source = spans[0].1.source.clone();
        let runs = runs(&spans, source.gap_worth_reading());
        let ranges: Vec<(u64, usize)> = runs
            .iter()
            .map(|run| {
                let start = run[0].1.offset;
                let end = run
                    .iter()
                    .map(|(_, s)| s.offset + s.len as u64)
                    .max()
                    .unwrap_or(start);
                (start, (end - start) as usize)
            })
            .collect();
        bytes_read += ranges.iter().map(|(_, len)| *len as u64).sum::<u64>();
        // Runs of a remote file are requested several at a time.
        let read = read_ranges(source.as_ref(), &ranges);
        for ((run, read), (start, _)) in runs.into_iter().zip(read).zip(ranges) {
            if let [(i, span)] = run {
                // A run of one: its bytes as read, no copy.
                out[*i] = Some(read.and_then(|bytes| {
                    span.verify(&bytes)?;
                    entries[*i].checked(bytes)
                }));
                continue;
            }
            for (i, span) in run {
                out[*i] = Some(match &read {
                    Ok(bytes) => {
                        let from = (span.offset - start) as usize;
                        let bytes = &bytes[from..from + span.len];
                        span.verify(bytes)
                            .and_then(|()| entries[*i].checked(bytes.to_vec()))
                    }
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
    }
    let out = out
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("not read"))))
        .collect();
    (out, bytes_read)
}

/// Split offset-sorted spans into runs whose holes are at most `gap` bytes and whose extent
/// is at most [`MAX_RUN`] (a single larger tensor is a run of its own). A source whose reads
/// cost nothing extra (`gap` 0: a local file) reads every tensor on its own: merging would
/// only add a copy.
fn runs<'a>(spans: &'a [(usize, &'a Span)], gap: u64) -> Vec<&'a [(usize, &'a Span)]> {
    if gap == 0 {
        return spans.chunks(1).collect();
    }
    let mut out = Vec::new();
    let mut first = 0;
    let mut end = 0u64;
    for (k, (_, span)) in spans.iter().enumerate() {
        let span_end = span.offset + span.len as u64;
        if k > first
            && (span.offset > end.saturating_add(gap) || span_end - spans[first].1.offset > MAX_RUN)
        {
            out.push(&spans[first..k]);
            first = k;
            end = 0;
        }
        end = end.max(span_end);
    }
    if first < spans.len() {
        out.push(&spans[first..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::format::DType;
    use crate::source::bytes::ByteSource;

    /// An in-memory source that records the reads it serves.
    struct Recorded {
        bytes: Vec<u8>,
        gap: u64,
        reads: Mutex<Vec<(u64, usize)>>,
    }

    impl ByteSource for Recorded {
        fn len(&self) -> u64 {
            self.bytes.len() as u64
        }
        fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            self.reads.lock().unwrap().push((offset, len));
            let start = offset as usize;
            Ok(self.bytes[start..start + len].to_vec())
        }
        fn gap_worth_reading(&self) -> u64 {
            self.gap
        }
    }

    fn entry(source: &Arc<Recorded>, name: &str, offset: u64, len: usize) -> TensorEntry {
        TensorEntry::in_span(
            name.into(),
            vec![len],
            DType::U8,
            source.clone(),
            (offset, len),
            None,
        )
    }

    #[test]
    fn neighbours_are_read_together_and_cut_apart() {
        let bytes: Vec<u8> = (0..=255).collect();
        for (gap, want_reads) in [
            (0, vec![(0, 10), (10, 10), (30, 10), (100, 5)]),
            (1, vec![(0, 20), (30, 10), (100, 5)]),
            (10, vec![(0, 40), (100, 5)]),
            (1000, vec![(0, 105)]),
        ] {
            let source = Arc::new(Recorded {
                bytes: bytes.clone(),
                gap,
                reads: Mutex::new(Vec::new()),
            });
            // Asked out of order; `b` and `a` touch, `c` is 10 bytes on, `d` far.
            let (a, b, c, d) = (
                entry(&source, "a", 0, 10),
                entry(&source, "b", 10, 10),
                entry(&source, "c", 30, 10),
                entry(&source, "d", 100, 5),
            );
            let (got, bytes_read) = read_many(&[&d, &b, &a, &c]);
            let got: Vec<Vec<u8>> = got.into_iter().map(Result::unwrap).collect();
            assert_eq!(got[0], bytes[100..105]);
            assert_eq!(got[1], bytes[10..20]);
            assert_eq!(got[2], bytes[0..10]);
            assert_eq!(got[3], bytes[30..40]);
            let mut reads = source.reads.lock().unwrap().clone();
            reads.sort();
            assert_eq!(reads, want_reads, "gap {gap}");
            let total: usize = want_reads.iter().map(|(_, len)| len).sum();
            assert_eq!(bytes_read, total as u64, "gap {gap}");
        }
    }
}
