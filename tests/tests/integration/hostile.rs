//! The second hostile-input probe's cases (issue 24), each on its exact input: every one is a
//! clear error naming the file, field or key — never a panic, abort, signal, hang or unbounded
//! allocation — and the model is unchanged.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn_pretrain::{Error, Policy, Pretrain, PretrainExt, Pretrainable};
use burn_pretrain_tests::fixture;

#[derive(Module, Debug, Pretrainable)]
struct Head {
    head: Linear,
}

fn rows_from(file: &std::path::Path) -> Result<Head, Error> {
    let device = Device::flex();
    let model = Head {
        head: LinearConfig::new(16, 3).init(&device),
    };
    let spec = Pretrain::from(fixture("policies/policies.pth"))
        .with_on_mismatch("^head\\.", Policy::select_rows_from(file.to_string_lossy()));
    model.load_pretrained(spec).map(|(model, _)| model)
}

/// A `rows_file` gets a checkpoint's guards: a FIFO (which would block the read forever), a
/// device (which never ends) and a 1 GB file (read whole, it aborted) are refused by what
/// they are, before a byte is read, naming the field and the file.
#[test]
fn a_rows_file_that_is_a_fifo_a_device_or_huge_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = burn_pretrain_tests::make_fifo(dir.path(), "rows.fifo");
    let huge = dir.path().join("rows.txt");
    // Sparse: 1 GB long, no disk used.
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    for (file, why) in [
        (fifo.as_path(), "it is a named pipe (FIFO), not a regular file"),
        (std::path::Path::new("/dev/zero"), "it is a device, not a regular file"),
        (huge.as_path(), "it holds 1073741824 bytes, more than the"),
    ] {
        let err = rows_from(file).unwrap_err();
        let Error::SpecFile { field, path, .. } = &err else {
            panic!("{}: {err:?}", file.display())
        };
        assert_eq!(field, "on_mismatch.rows_file");
        assert_eq!(path, file);
        let text = burn_pretrain::error::chain(&err);
        assert!(text.contains(&file.display().to_string()), "{text}");
        assert!(text.contains(why), "{text}");
    }
}
