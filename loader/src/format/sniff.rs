//! Recognise a checkpoint's format from its first bytes.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::Format;
use crate::error::{Error, Result};
use crate::source::local::file_kind;

/// How many bytes are looked at: enough for the TAR magic at offset 257.
pub(super) const HEAD: u64 = 512;
/// The legacy pickle magic 0x1950a86a20f9469cfc6c as protocols ≥ 2 write it (little-endian
/// bytes of a `LONG1`), and as protocols 0/1 write it (decimal text).
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_MAGIC_TEXT: &[u8] = b"119547037146038801333356";
/// The safetensors header size limit (the `safetensors` crate's own).
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sniffed {
    /// A checkpoint format.
    Format(Format),
    /// JSON text: maybe a shard index (`*.index.json`).
    Json,
}

/// Open `path`, read its first bytes and name the format, or say clearly what it is instead.
pub(super) fn detect(path: &Path) -> Result<Sniffed> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.is_dir() {
        return Err(Error::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    // A FIFO would block the read below forever, a device never end: refused before reading.
    if !meta.is_file() {
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(HEAD).read_to_end(&mut head))
        .map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
    if head.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    match classify(&head) {
        Ok(format) => Ok(Sniffed::Format(format)),
        Err(_) if head.trim_ascii_start().starts_with(b"{") => Ok(Sniffed::Json),
        Err(found) => Err(Error::UnknownFormat {
            path: path.to_path_buf(),
            found,
        }),
    }
}

/// The format these first bytes belong to, or a description of what they are.
pub(super) fn classify(head: &[u8]) -> Result<Format, String> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Ok(Format::PytorchZip);
    }
    if head.get(257..262) == Some(b"ustar") {
        return Ok(Format::PytorchTar);
    }
    let window = &head[..head.len().min(64)];
    if window
        .windows(LEGACY_MAGIC.len())
        .any(|w| w == LEGACY_MAGIC)
        || window
            .windows(LEGACY_MAGIC_TEXT.len())
            .any(|w| w == LEGACY_MAGIC_TEXT)
    {
        return Ok(Format::PytorchLegacy);
    }
    // A burn ≤ 0.21 record: gzipped (its content checked when read), named MessagePack,
    // JSON opening with `metadata`, or bincode (refused when read, saying why).
    if head.starts_with(&[0x1f, 0x8b, 0x08]) || super::burn_record::encoding(head).is_some() {
        return Ok(Format::BurnRecord);
    }
    if head.len() >= burn_pack::HEADER_SIZE
        && burn_pack::Header::from_bytes(&head[..burn_pack::HEADER_SIZE]).is_ok()
    {
        return Ok(Format::Burnpack);
    }
    if let Some(len) = head.first_chunk::<8>().map(|b| u64::from_le_bytes(*b))
        && (2..=SAFETENSORS_MAX_HEADER).contains(&len)
        && head.get(8) == Some(&b'{')
    {
        return Ok(Format::Safetensors);
    }
    Err(describe(head))
}

/// Say in a few words what a file we cannot read looks like.
fn describe(head: &[u8]) -> String {
    let text = String::from_utf8_lossy(head);
    let trimmed = text.trim_start().to_ascii_lowercase();
    if trimmed.starts_with("<!doctype html") || trimmed.starts_with("<html") {
        return "an HTML page (a download that saved an error or login page?)".into();
    }
    if trimmed.starts_with("<?xml") {
        return "an XML document (an object store error response?)".into();
    }
    if trimmed.starts_with("version https://git-lfs") {
        return "a Git LFS pointer, not the file it points to (run `git lfs pull`)".into();
    }
    // An ONNX ModelProto opens with ir_version (field 1), then producer_name, opset or graph.
    if let [0x08, version, next, ..] = head
        && (1..=32).contains(version)
        && matches!(next, 0x12 | 0x1a | 0x22 | 0x2a | 0x32 | 0x3a | 0x42)
    {
        return "an ONNX model (a graph, not a state dict): burn-import reads ONNX and generates the burn model with its weights; or export the PyTorch model's state_dict with torch.save".into();
    }
    if head.first() == Some(&0x80) {
        return "a Python pickle that is not a torch.save checkpoint (no tensor storage)".into();
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return "a gzip stream (decompress it first)".into();
    }
    let printable = head
        .iter()
        .take(64)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if printable {
        let snippet: String = text.chars().take(40).collect();
        return format!("text starting with {snippet:?}");
    }
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("unrecognised bytes starting with {}", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_it_cannot_read() {
        let html = classify(b"\n  <!DOCTYPE html><html><body>404</body></html>").unwrap_err();
        assert!(html.contains("HTML page"), "{html}");
        let text = classify(b"hello world").unwrap_err();
        assert_eq!(text, "text starting with \"hello world\"");
        let bytes = classify(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0x04]).unwrap_err();
        assert_eq!(
            bytes,
            "unrecognised bytes starting with de ad be ef 00 01 02 03"
        );
        let pickle = classify(&[0x80, 0x04, 0x95, 0x10]).unwrap_err();
        assert!(pickle.contains("pickle"), "{pickle}");
    }

    #[test]
    fn recognises_magic_bytes() {
        assert_eq!(classify(b"PK\x03\x04rest"), Ok(Format::PytorchZip));
        let mut st = 20u64.to_le_bytes().to_vec();
        st.extend_from_slice(b"{\"a\":1}");
        assert_eq!(classify(&st), Ok(Format::Safetensors));
        let mut legacy = vec![0x80, 0x02, 0x8a, 0x0a];
        legacy.extend_from_slice(&LEGACY_MAGIC);
        assert_eq!(classify(&legacy), Ok(Format::PytorchLegacy));
    }
}
