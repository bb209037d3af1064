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

// --- Pickles and zips -----------------------------------------------------------------

/// A `{key: (storage, numel, offset, shape, stride)}` state dict of f32 views over
/// `storages`, written as a PyTorch zip in `dir`.
fn hostile_zip(
    dir: &tempfile::TempDir,
    name: &str,
    tensors: &[burn_pretrain_tests::F32View<'_>],
    storages: &[(&str, &[u8])],
) -> std::path::PathBuf {
    let path = dir.path().join(name);
    let pickle = burn_pretrain_tests::state_dict_pickle(tensors);
    std::fs::write(&path, burn_pretrain_tests::torch_zip(&pickle, storages)).unwrap();
    path
}

fn open_err(path: &std::path::Path) -> String {
    let err = burn_pretrain::Checkpoint::open(path).unwrap_err();
    let text = burn_pretrain::error::chain(&err);
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

/// Four bytes of storage viewed with stride 0 as 2^31 floats: `convert` wrote 8 GiB (and held
/// them in memory). 100,000 keys each viewing one 1 MiB storage: 100 GB. Both are refused at
/// open, in time linear in the keys; a real sharing (tied weights) still opens.
#[test]
fn storages_viewed_far_beyond_their_size_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let expanded = hostile_zip(
        &dir,
        "expanded.pth",
        &[("w", "0", 1, 0, &[1 << 31], &[0])],
        &[("0", &[0; 4])],
    );
    let text = open_err(&expanded);
    assert!(
        text.contains("would materialise 8589934592 bytes, more than 64 times the file's"),
        "{text}"
    );
    assert!(text.contains("`w` [2147483648] f32"), "{text}");

    let keys: Vec<String> = (0..100_000).map(|i| format!("layers.{i}.weight")).collect();
    let views: Vec<burn_pretrain_tests::F32View<'_>> = keys
        .iter()
        .map(|k| {
            (
                k.as_str(),
                "0",
                1 << 18,
                0,
                &[1usize << 18][..],
                &[1usize][..],
            )
        })
        .collect();
    let storage = vec![0u8; 1 << 20];
    let shared = hostile_zip(&dir, "shared.pth", &views, &[("0", &storage)]);
    let started = std::time::Instant::now();
    let text = open_err(&shared);
    assert!(
        text.contains("its 100000 tensors would materialise 104857600000 bytes"),
        "{text}"
    );
    eprintln!(
        "100,000 keys over one storage refused in {:?}",
        started.elapsed()
    );
    // The CLI's convert, which wrote them, refuses before creating its output.
    let device = Device::flex();
    let err = Head {
        head: LinearConfig::new(16, 3).init(&device),
    }
    .load_pretrained(&shared)
    .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");

    // Tied weights: two keys over one storage open, and read the same values.
    let values: Vec<u8> = (0..16u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let tied = hostile_zip(
        &dir,
        "tied.pth",
        &[
            ("embed.weight", "0", 16, 0, &[4, 4], &[4, 1]),
            ("head.weight", "0", 16, 0, &[4, 4], &[4, 1]),
        ],
        &[("0", &values)],
    );
    let checkpoint = burn_pretrain::Checkpoint::open(&tied).unwrap();
    let read = |key| checkpoint.get(key).unwrap().read().unwrap();
    assert_eq!(read("embed.weight"), values);
    assert_eq!(read("head.weight"), values);
}

/// `{"a": [[[…]]]}` nested a million lists deep overflowed the stack. Refused (by
/// `pytorch-reader`, past 1000 levels), naming the file; 900 levels are read (and hold no
/// tensor).
#[test]
fn a_pickle_nested_a_million_deep_is_an_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let nested = |depth: usize| {
        let mut p = b"\x80\x02}X\x01\x00\x00\x00a".to_vec();
        p.extend(std::iter::repeat_n(b']', depth));
        p.extend(std::iter::repeat_n(b'a', depth - 1));
        p.extend_from_slice(b"s.");
        p
    };
    let deep = dir.path().join("deep.pth");
    std::fs::write(
        &deep,
        burn_pretrain_tests::torch_zip(&nested(1_000_000), &[]),
    )
    .unwrap();
    let text = open_err(&deep);
    assert!(text.contains("nesting exceeds 1000 levels"), "{text}");
    // Within pytorch-reader's limit (and past the walk's, 256): no tensor, and no overflow.
    let within = dir.path().join("within.pth");
    std::fs::write(&within, burn_pretrain_tests::torch_zip(&nested(900), &[])).unwrap();
    let err = burn_pretrain::Checkpoint::open(&within).unwrap_err();
    assert!(matches!(err, Error::NoTensors { .. }), "{err:?}");
}

// --- Alignment at scale -------------------------------------------------------------------

#[derive(Module, Debug, Pretrainable)]
struct Proj {
    proj: Linear,
}

#[derive(Module, Debug, Pretrainable)]
struct Blocks {
    blocks: Vec<Proj>,
}

/// 100,000 blocks whose keys share a suffix (`proj.weight`) under a checkpoint prefix
/// (`encoder.`), with a thousand 100-segment keys besides: the alignment voted for every pair
/// of keys sharing the suffix (10^10 votes). Now linear: the hint names the rewrite, and
/// `align: auto` applies it so every block loads.
#[test]
fn alignment_of_a_hundred_thousand_keys_sharing_a_suffix_is_linear() {
    use burn_pretrain::view::Align;
    const N: usize = 100_000;
    let device = Device::flex();
    let model = Blocks {
        blocks: (0..N)
            .map(|_| Proj {
                proj: LinearConfig::new(1, 1).with_bias(false).init(&device),
            })
            .collect(),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encoder.safetensors");
    let deep = vec!["a"; 99].join(".");
    let tensors: Vec<(String, Vec<usize>)> = (0..N)
        .map(|i| (format!("encoder.blocks.{i}.proj.weight"), vec![1, 1]))
        .chain((0..1000).map(|i| (format!("{deep}.{i}"), vec![1, 1])))
        .collect();
    burn_pretrain_tests::write_zero_safetensors(&path, &tensors);
    let started = std::time::Instant::now();
    let err = model.plan_pretrained(&path).unwrap_err();
    let Error::Unmet { report, .. } = &err else {
        panic!("{err:?}")
    };
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "hint: stripping `encoder.` from checkpoint keys makes {N} of {N} model tensors agree"
        )),
        "{}",
        &text[..text.len().min(2000)]
    );
    let report = model
        .plan_pretrained(
            Pretrain::from(&path)
                .with_align(Align::Auto)
                .with_allow_unexpected(".*"),
        )
        .unwrap();
    assert_eq!(report.loaded().len(), N);
    assert_eq!(report.unexpected().len(), 1000);
    eprintln!(
        "two plans of 101,000 keys against 100,000 in {:?}",
        started.elapsed()
    );
}
