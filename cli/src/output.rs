//! Writing to stdout, where a closed pipe (`pretrain inspect x | head`) is not an error.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Print `text` to stdout.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Print a JSON value, pretty.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    print(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Whether the error is stdout's reader going away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Refuse to write `out` when it is one of the command's `inputs` (the same file under another
/// spelling, through a symbolic or hard link): the atomic write would replace what the
/// command reads with what it made of it. `inputs` pairs what each input is with its path.
pub fn ensure_not_input(out: &Path, inputs: &[(&str, PathBuf)]) -> anyhow::Result<()> {
    for (what, input) in inputs {
        if same_file(out, input) {
            anyhow::bail!(
                "{}: refusing to write the output onto the {what} it is made from ({}); choose another path",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Whether two paths name one existing file (device and inode where there are such, else the
/// canonical paths).
fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = (a, b);
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}
