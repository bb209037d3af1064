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
        (
            fifo.as_path(),
            "it is a named pipe (FIFO), not a regular file",
        ),
        (
            std::path::Path::new("/dev/zero"),
            "it is a device, not a regular file",
        ),
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

// --- Files that change while they load --------------------------------------------------

use std::cell::RefCell;

use burn_pretrain::mapping::Mapper;
use burn_pretrain_tests::{Backbone, Classifier, StateDict};

thread_local! {
    /// What the next mapping walk does to the checkpoint: the first walk runs after the
    /// checkpoint's header is read and before any tensor is, exactly when the probe's
    /// truncation hit.
    static SABOTAGE: RefCell<Option<Box<dyn FnOnce()>>> = RefCell::new(None);
}

/// A model that sabotages its checkpoint on its first mapping walk, then maps as `inner`.
macro_rules! sabotaged {
    ($name:ident, $inner:ty) => {
        #[derive(Module, Debug)]
        struct $name {
            inner: $inner,
        }

        impl Pretrainable for $name {
            fn map_pretrain(&mut self, m: &mut Mapper<'_>) {
                if let Some(sabotage) = SABOTAGE.with(|s| s.borrow_mut().take()) {
                    sabotage();
                }
                self.inner.map_pretrain(m);
            }
        }
    };
}

sabotaged!(SabotagedClassifier, Classifier);
sabotaged!(SabotagedBackbone, Backbone);
sabotaged!(SabotagedStem, Stem);

#[derive(Module, Debug, Pretrainable)]
struct Stem {
    stem: burn::nn::conv::Conv2d,
}

/// How the file changes under the load.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Cut to half its length (what made the mapped reads die with SIGBUS).
    Truncate,
    /// Rewritten in place with other bytes of the same length.
    Rewrite,
}

fn sabotage(path: &std::path::Path, change: Change) {
    let path = path.to_path_buf();
    SABOTAGE.with(|s| {
        *s.borrow_mut() = Some(Box::new(move || {
            let len = std::fs::metadata(&path).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            match change {
                Change::Truncate => file.set_len(len / 2).unwrap(),
                Change::Rewrite => {
                    use std::os::unix::fs::FileExt;
                    // The second half: tensor bytes, not the header that was already read.
                    file.write_all_at(&vec![0x7f; (len / 2) as usize], len - len / 2)
                        .unwrap();
                    // A modification time surely different from the open's, whatever the
                    // file system's granularity.
                    file.set_modified(
                        std::time::SystemTime::now() + std::time::Duration::from_secs(5),
                    )
                    .unwrap();
                }
            }
        }))
    });
}

/// A copy of `fixture` that the test may damage.
fn copy_of(dir: &tempfile::TempDir, relative: &str) -> std::path::PathBuf {
    let to = dir.path().join(relative.replace('/', "_"));
    std::fs::copy(fixture(relative), &to).unwrap();
    to
}

/// The error of a load whose file changed: it names the file, and says what happened.
fn assert_changed_error(err: &Error, path: &std::path::Path, change: Change) {
    let text = burn_pretrain::error::chain(err);
    assert!(matches!(err, Error::Changed { .. }), "{change:?}: {err:?}");
    assert!(
        text.contains(&path.display().to_string()),
        "{change:?}: {text}"
    );
    assert!(text.contains("changed while it was read"), "{text}");
    let what = match change {
        Change::Truncate => "bytes when opened",
        Change::Rewrite => "modification time moved",
    };
    assert!(text.contains(what), "{text}");
}

/// Truncated or rewritten while it loads, a checkpoint gives an error naming it — not a
/// signal — and the model keeps every value: a PyTorch zip (plain copies and Linear
/// transposes), an f16 one (casts), safetensors, and an adapted tensor (read whole).
#[test]
fn a_checkpoint_that_changes_while_it_loads_is_an_error_and_the_model_is_unchanged() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    for change in [Change::Truncate, Change::Rewrite] {
        for fixture_path in [
            "dataparallel/classifier_dp.pth",
            "safetensors/classifier.safetensors",
        ] {
            let path = copy_of(&dir, fixture_path);
            let mut model = SabotagedClassifier {
                inner: Classifier::new(5, &device),
            };
            let before = model.inner.to_state_dict();
            sabotage(&path, change);
            let err = model.load_pretrained_in_place(&path).unwrap_err();
            assert_changed_error(&err, &path, change);
            assert_eq!(model.inner.to_state_dict(), before, "{fixture_path}");
        }
        let path = copy_of(&dir, "half/backbone_f16.pth");
        let mut model = SabotagedBackbone {
            inner: Backbone::new(&device),
        };
        let before = model.inner.to_state_dict();
        sabotage(&path, change);
        let err = model.load_pretrained_in_place(&path).unwrap_err();
        assert_changed_error(&err, &path, change);
        assert_eq!(model.inner.to_state_dict(), before);

        let path = copy_of(&dir, "policies/policies.pth");
        let mut model = SabotagedStem {
            inner: Stem {
                stem: burn::nn::conv::Conv2dConfig::new([1, 8], [3, 3])
                    .with_bias(false)
                    .init(&device),
            },
        };
        let before = model.inner.stem.weight.val().into_data();
        sabotage(&path, change);
        let spec = Pretrain::from(&path)
            .with_on_mismatch(r"^stem\.weight$", Policy::AdaptInChannels)
            .with_allow_partial(true);
        let err = model.load_pretrained_in_place(spec).unwrap_err();
        assert_changed_error(&err, &path, change);
        assert_eq!(model.inner.stem.weight.val().into_data(), before);
    }
}
