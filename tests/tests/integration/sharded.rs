//! Sharded checkpoints (`*.index.json` + shard files, written by huggingface_hub's
//! `save_torch_state_dict` in `fixtures/sharded/generate.py`): one checkpoint from a local
//! folder, over HTTP and from the Hub; an index that disagrees with its shards is refused.

use std::path::Path;

use burn::prelude::*;
use burn_pretrain::format::Format;
use burn_pretrain::{Checkpoint, Error, Pretrain, PretrainExt};
use burn_pretrain_models::{ResNet, ResNetConfig};
use burn_pretrain_tests::server::{Behavior, TestServer};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};

const SAFETENSORS_INDEX: &str = "sharded/safetensors/model.safetensors.index.json";
const BIN_INDEX: &str = "sharded/bin/pytorch_model.bin.index.json";

fn resnext(device: &Device) -> ResNet {
    ResNetConfig::new(50)
        .with_base_channels(4)
        .with_groups(2)
        .with_width_per_group(32)
        .init(device)
        .unwrap()
}

/// The net loaded from `spec` gives torchvision's features; its report.
fn assert_matches_torchvision(spec: impl Into<Pretrain>) -> burn_pretrain::LoadReport {
    let device = Device::flex();
    let (net, report) = resnext(&device).load_pretrained(spec).unwrap();
    assert_eq!(report.loaded().len(), 265, "{report}");
    assert_eq!(report.shards(), 3);
    let first = report.to_string();
    assert!(
        first.lines().next().unwrap().contains(", 3 shards"),
        "{report}"
    );
    assert!(report.missing().is_empty() && report.mismatched().is_empty());
    let x = saved_tensor::<4>("resnet/resnext_narrow_io.safetensors", "input", &device);
    let want = saved_tensor::<4>("resnet/resnext_narrow_io.safetensors", "features", &device);
    let err = relative_error(net.forward(x), want);
    assert!(err <= 1e-4, "relative error {err}");
    report
}

#[test]
fn sharded_checkpoints_open_as_one() {
    let single = Checkpoint::open(fixture("resnet/resnext_narrow.pth")).unwrap();
    for (index, format, prefix) in [
        (SAFETENSORS_INDEX, Format::Safetensors, "model-0000"),
        (BIN_INDEX, Format::PytorchZip, "pytorch_model-0000"),
    ] {
        let sharded = Checkpoint::open(fixture(index)).unwrap();
        assert_eq!(sharded.format(), format);
        assert_eq!(sharded.path(), fixture(index));
        assert_eq!(sharded.shards().len(), 3, "{:?}", sharded.shards());
        // The index's order is the state dict's: the stem first.
        assert_eq!(sharded.entries()[0].key(), "conv1.weight");
        assert_eq!(sharded.entries().len(), single.entries().len());
        // Every tensor as PyTorch saved it in the single file, read from the shard that holds it.
        for entry in single.entries() {
            let shard = sharded.get(entry.key()).unwrap();
            let file = shard.file().file_name().unwrap().to_string_lossy();
            assert!(file.starts_with(prefix), "{file}");
            assert_eq!(shard.shape(), entry.shape(), "{}", entry.key());
            assert_eq!(shard.dtype(), entry.dtype(), "{}", entry.key());
            assert_eq!(
                shard.read().unwrap(),
                entry.read().unwrap(),
                "{}",
                entry.key()
            );
        }
    }
}

#[test]
fn sharded_safetensors_load_a_model_that_matches_torchvision() {
    assert_matches_torchvision(fixture(SAFETENSORS_INDEX));
}

#[test]
fn sharded_torch_save_files_load_a_model_that_matches_torchvision() {
    assert_matches_torchvision(fixture(BIN_INDEX));
}

/// With `mmap`, each shard is mapped and every tensor of this net (convolutions and norms,
/// all stored as the model holds them) is a range of its shard's mapping: every byte the load
/// takes is mapped, none read, and the net still matches torchvision.
#[test]
fn sharded_checkpoints_load_mapped_shard_by_shard() {
    for index in [SAFETENSORS_INDEX, BIN_INDEX] {
        let spec = Pretrain::from_path(fixture(index).display().to_string()).with_mmap(true);
        let report = assert_matches_torchvision(spec);
        assert!(report.bytes_read() > 0);
        assert_eq!(
            report.bytes_mapped(),
            report.bytes_read(),
            "{index}: {report}"
        );
    }
}

/// A copy of the safetensors shard folder whose index text goes through `edit`.
fn edited_copy(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("sharded/safetensors")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let index = dir.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, edit(text)).unwrap();
    dir
}

fn open_error(dir: &Path) -> Error {
    Checkpoint::open(dir.join("model.safetensors.index.json")).unwrap_err()
}

#[test]
fn an_index_that_disagrees_with_its_shards_is_refused_by_name() {
    // A shard file is missing: the error names it, and a model loading it stays as it was.
    let dir = edited_copy(|text| text);
    std::fs::remove_file(dir.path().join("model-00002-of-00003.safetensors")).unwrap();
    let err = open_error(dir.path());
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains("model-00002-of-00003.safetensors"),
        "{err}"
    );
    let device = Device::flex();
    let mut net = resnext(&device);
    let before = net.conv1.weight.val().into_data();
    assert!(
        net.load_pretrained_in_place(dir.path().join("model.safetensors.index.json"))
            .is_err()
    );
    assert_eq!(net.conv1.weight.val().into_data(), before);

    // The index puts a tensor in a shard that does not hold it.
    let dir = edited_copy(|text| {
        text.replacen(
            r#""conv1.weight": "model-00001-of-00003.safetensors""#,
            r#""conv1.weight": "model-00003-of-00003.safetensors""#,
            1,
        )
    });
    let err = burn_pretrain::error::chain(&open_error(dir.path()));
    assert!(
        err.contains("puts `conv1.weight` in `model-00003-of-00003.safetensors`, but it is in `model-00001-of-00003.safetensors`"),
        "{err}"
    );

    // The index lists a tensor no shard has.
    let dir = edited_copy(|text| {
        text.replacen(
            r#""weight_map": {"#,
            r#""weight_map": {"ghost.weight": "model-00001-of-00003.safetensors","#,
            1,
        )
    });
    let err = burn_pretrain::error::chain(&open_error(dir.path()));
    assert!(
        err.contains("`ghost.weight`") && err.contains("does not hold it"),
        "{err}"
    );

    // A shard name that leaves the index's folder is never followed.
    let dir = edited_copy(|text| text.replace("model-00003-of-00003", "../model-00003-of-00003"));
    let err = open_error(dir.path());
    assert!(matches!(err, Error::ShardIndex { .. }), "{err:?}");
    assert!(
        burn_pretrain::error::chain(&err).contains("../model-00003-of-00003.safetensors"),
        "{err}"
    );

    // JSON that is not an index says so.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"architectures": ["ResNet"]}"#).unwrap();
    let err = burn_pretrain::error::chain(&Checkpoint::open(&config).unwrap_err());
    assert!(
        err.contains("config.json") && err.contains("not a shard index"),
        "{err}"
    );
}

/// Serve the safetensors shard folder under `prefix` on a test server.
fn serve_shards(server: &TestServer, prefix: &str) -> Vec<String> {
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(fixture("sharded/safetensors")).unwrap() {
        let entry = entry.unwrap();
        let route = format!("{prefix}/{}", entry.file_name().to_string_lossy());
        server.route(
            &route,
            Behavior::Serve(std::fs::read(entry.path()).unwrap()),
        );
        routes.push(route);
    }
    routes
}

#[test]
fn shards_come_from_beside_the_index_over_http_and_from_the_hub() {
    let server = TestServer::start();
    let cache = tempfile::tempdir().unwrap();
    let spec = |uri: &str| {
        Pretrain::from(uri)
            .with_cache_dir(cache.path().display().to_string())
            .with_endpoint(server.base())
    };

    let routes = serve_shards(&server, "/models/resnext");
    let url = format!(
        "{}/models/resnext/model.safetensors.index.json",
        server.base()
    );
    assert_matches_torchvision(spec(&url));
    // Cached: the second load asks for nothing.
    assert_matches_torchvision(spec(&url));
    for route in &routes {
        assert_eq!(server.counters(route).full_transfers, 1, "{route}");
        assert_eq!(server.counters(route).requests, 1, "{route}");
    }

    // By byte ranges: the index whole, then every shard's header and tensors, never a whole
    // shard; nothing cached.
    let ranged_cache = tempfile::tempdir().unwrap();
    let routes = serve_shards(&server, "/ranged/resnext");
    let url = format!(
        "{}/ranged/resnext/model.safetensors.index.json",
        server.base()
    );
    assert_matches_torchvision(
        Pretrain::from(url.as_str())
            .with_cache_dir(ranged_cache.path().display().to_string())
            .with_ranged(true),
    );
    for route in routes.iter().filter(|r| r.ends_with(".safetensors")) {
        let sent = server.counters(route);
        assert!(
            sent.requests > 1 && sent.full_transfers == 0,
            "{route}: {sent:?}"
        );
    }
    assert_eq!(std::fs::read_dir(ranged_cache.path()).unwrap().count(), 0);

    let hub = serve_shards(&server, "/org/resnext/resolve/main/weights");
    assert_matches_torchvision(spec(
        "hf://org/resnext/weights/model.safetensors.index.json",
    ));
    for route in &hub {
        assert_eq!(server.counters(route).full_transfers, 1, "{route}");
    }

    // A shard the server does not have: a 404 naming the shard's URL.
    server.route(
        "/broken/model.safetensors.index.json",
        Behavior::Serve(std::fs::read(fixture(SAFETENSORS_INDEX)).unwrap()),
    );
    server.route(
        "/broken/model-00001-of-00003.safetensors",
        Behavior::NotFound,
    );
    let err = resnext(&Device::flex())
        .load_pretrained(spec(&format!(
            "{}/broken/model.safetensors.index.json",
            server.base()
        )))
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("/broken/model-00001-of-00003.safetensors"),
        "{err}"
    );
}
