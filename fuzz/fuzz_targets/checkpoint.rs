//! Format sniffing and every reader's open (PyTorch zip and legacy through pytorch-reader,
//! safetensors, burnpack, a shard index), then every tensor's read: any bytes give a
//! checkpoint or an error, never a panic, a hang or an allocation the file cannot back.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// One folder per process (on tmpfs when there is one): the input is its only file, so a
/// shard index finds no shards but itself.
fn input_path() -> &'static PathBuf {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary folder");
        let path = dir.path().join("input");
        (dir, path)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let path = input_path();
    std::fs::write(path, data).expect("write the input");
    if let Ok(checkpoint) = burn_pretrain::Checkpoint::open(path) {
        for entry in checkpoint.entries() {
            let _ = entry.read();
        }
    }
});
