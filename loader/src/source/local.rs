//! Local files other than checkpoints that a spec or config names (a `select_rows` file, a
//! config; later adapters and label lists): read whole, after the guards a checkpoint gets —
//! a regular file (a FIFO would block the read forever, `/dev/zero` never end), no larger than
//! a bound for its kind, and read no further than that bound even if it grows meanwhile.

use std::io::{self, Read};
use std::path::Path;

/// What a path that is not a regular file is, in words.
pub(crate) fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        return "a directory";
    }
    let _ = file_type;
    "not a regular file"
}

/// The metadata of `path` when it is a regular file; else an error saying what it is (a FIFO
/// would block a read forever, a device never end).
pub fn regular_file(path: &Path) -> io::Result<std::fs::Metadata> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", file_kind(&meta.file_type())),
        ));
    }
    Ok(meta)
}

/// The whole of a small file: refused, with what it is, when it is not a regular file or is
/// larger than `limit` bytes (checked before reading, and again while reading).
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let meta = regular_file(path)?;
    let too_large = |size: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it holds {size}, more than the {limit} bytes such a file may have"),
        )
    };
    if meta.len() > limit {
        return Err(too_large(format!("{} bytes", meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large("more bytes than when it was opened".into()));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_bounded_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it is not UTF-8 text (byte {} is not)",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_bound_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("rows.txt");
        std::fs::write(&small, "1 2 3\n").unwrap();
        assert_eq!(read_bounded_text(&small, 64).unwrap(), "1 2 3\n");
        let err = read_bounded(&small, 3).unwrap_err();
        assert!(
            err.to_string().contains("6 bytes, more than the 3"),
            "{err}"
        );
        let err = read_bounded(dir.path(), 64).unwrap_err();
        assert!(err.to_string().contains("a directory"), "{err}");
        #[cfg(target_os = "linux")]
        {
            let err = read_bounded(Path::new("/dev/zero"), 64).unwrap_err();
            assert!(err.to_string().contains("a device"), "{err}");
        }
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        let err = read_bounded_text(&small, 64).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("rows.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let err = read_bounded(&fifo, 64).unwrap_err();
        assert!(err.to_string().contains("a named pipe (FIFO)"), "{err}");
    }
}
