//! The CLI's `.npy` input (`pretrain load --input`): any bytes read as a float32 array or an
//! error; what reads writes back and reads again unchanged.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

#[path = "../../cli/src/npy.rs"]
#[allow(dead_code)]
mod npy;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary folder"))
}

fuzz_target!(|data: &[u8]| {
    let input: PathBuf = dir().path().join("input.npy");
    std::fs::write(&input, data).expect("write the input");
    let Ok((shape, values)) = npy::read_f32(&input) else {
        return;
    };
    let output = dir().path().join("output.npy");
    npy::write_f32(&output, &shape, &values).expect("write back");
    let (shape2, values2) = npy::read_f32(&output).expect("read back");
    assert_eq!(shape, shape2);
    assert_eq!(
        values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        values2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
});
