//! Sources against real servers on loopback: an HTTP server with fault modes (in-process),
//! the Hub's download routes on the same server, and an S3-compatible server (moto).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use burn::prelude::*;
use burn_pretrain::{Error, Pretrain, PretrainExt};
use burn_pretrain_tests::server::{Behavior, TestServer};
use burn_pretrain_tests::{Backbone, Classifier, StateDict, assert_values_eq, expected, fixture};

const HELPER: &str = env!("CARGO_BIN_EXE_fetch_checkpoint");

fn dp_bytes() -> Vec<u8> {
    std::fs::read(fixture("dataparallel/classifier_dp.pth")).unwrap()
}

/// Files in the cache folder other than lock files: complete entries only, never a part.
fn cache_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn spec(url: &str, cache: &Path) -> Pretrain {
    Pretrain::from(url).with_cache_dir(cache.display().to_string())
}

#[test]
fn http_checkpoint_loads_once_then_comes_from_the_cache() {
    let server = TestServer::start();
    let url = server.route("/models/classifier_dp.pth", Behavior::Serve(dp_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let (model, report) = Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()))
        .unwrap();
    assert_eq!(report.source(), url);
    assert_eq!(report.loaded().len(), 32);
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("dataparallel"), ""),
        32
    );
    let (_, again) = Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()))
        .unwrap();
    assert_eq!(again.loaded().len(), 32);
    assert_eq!(server.counters("/models/classifier_dp.pth").requests, 1);
    let files = cache_files(cache.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("-classifier_dp.pth"), "{files:?}");
}

#[test]
fn seed_third_scenario_from_a_url() {
    let server = TestServer::start();
    let bytes = std::fs::read(fixture("resnet/resnet18_narrow.pth")).unwrap();
    let url = server.route("/models/resnet18_narrow.pth", Behavior::Serve(bytes));
    let cache = tempfile::tempdir().unwrap();
    let net = burn_pretrain_models::ResNetConfig::resnet18()
        .with_base_channels(8)
        .init(&Device::flex())
        .unwrap();
    let (_, report) = net.load_pretrained(spec(&url, cache.path())).unwrap();
    assert_eq!(report.unexpected(), ["fc.bias", "fc.weight"]);
    assert_eq!(report.loaded().len(), 100);
}

#[test]
fn not_found_is_a_clear_error_and_caches_nothing() {
    let server = TestServer::start();
    let url = format!("{}/missing.pth", server.base());
    let cache = tempfile::tempdir().unwrap();
    let err = Backbone::new(&Device::flex())
        .load_pretrained(spec(&url, cache.path()))
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("{url} does not exist (404)"));
    assert!(cache_files(cache.path()).is_empty());
}

#[test]
fn server_error_then_success_is_retried() {
    let server = TestServer::start();
    let url = server.route("/flaky.pth", Behavior::FailThenServe(1, dp_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let report = Backbone::new(&Device::flex())
        .plan_pretrained(spec(&url, cache.path()).with_sub_level("backbone"))
        .unwrap();
    assert_eq!(report.loaded().len(), 30);
    assert_eq!(server.counters("/flaky.pth").requests, 2);
}

#[test]
fn connection_reset_mid_body_resumes_with_a_range() {
    let server = TestServer::start();
    let bytes = dp_bytes();
    let len = bytes.len();
    let url = server.route("/reset.pth", Behavior::ResetAfter(len / 3, bytes));
    let cache = tempfile::tempdir().unwrap();
    let (model, _) = Classifier::new(5, &Device::flex())
        .load_pretrained(spec(&url, cache.path()))
        .unwrap();
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("dataparallel"), ""),
        32
    );
    let seen = server.counters("/reset.pth");
    assert_eq!(seen.requests, 2);
    // The second request asked only for the rest: every byte was sent exactly once.
    assert_eq!(seen.bytes_sent, len);
    assert_eq!(seen.full_transfers, 0);
}

#[test]
fn body_shorter_than_its_length_fails_and_keeps_nothing() {
    let server = TestServer::start();
    let url = server.route("/short.pth", Behavior::ShortBody(dp_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let err = Backbone::new(&Device::flex())
        .load_pretrained(spec(&url, cache.path()))
        .unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    assert!(
        burn_pretrain::error::chain(&err).contains("gave up after 5 attempts"),
        "{err}"
    );
    assert!(cache_files(cache.path()).is_empty());
}

#[test]
fn wrong_hash_is_discarded() {
    let server = TestServer::start();
    let url = server.route("/hashed.pth", Behavior::Serve(dp_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let err = Backbone::new(&Device::flex())
        .load_pretrained(spec(&url, cache.path()).with_sha256("deadbeef"))
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
    assert!(cache_files(cache.path()).is_empty());
}

#[test]
fn right_hash_and_torch_hub_names_are_checked() {
    let bytes = dp_bytes();
    let digest = burn_pretrain_tests::sha256_hex(&bytes);
    let server = TestServer::start();
    // torch hub's convention: the name carries the first 8 hex digits of the sha256.
    let good = server.route(
        &format!("/hub/classifier-{}.pth", &digest[..8]),
        Behavior::Serve(bytes.clone()),
    );
    let bad = server.route("/hub/classifier-00000000.pth", Behavior::Serve(bytes));
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    Classifier::new(5, &device)
        .load_pretrained(spec(&good, cache.path()).with_sha256(digest.clone()))
        .unwrap();
    Classifier::new(5, &device)
        .load_pretrained(spec(&good, cache.path()))
        .unwrap();
    let err = Classifier::new(5, &device)
        .load_pretrained(spec(&bad, cache.path()))
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
}

#[test]
fn slow_server_past_the_timeout() {
    let server = TestServer::start();
    let url = server.route(
        "/slow.pth",
        Behavior::Slow(Duration::from_secs(3), dp_bytes()),
    );
    let cache = tempfile::tempdir().unwrap();
    let err = Backbone::new(&Device::flex())
        .load_pretrained(spec(&url, cache.path()).with_timeout(Duration::from_millis(200)))
        .unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    assert!(
        burn_pretrain::error::chain(&err).contains("timed out"),
        "{err}"
    );
    assert!(cache_files(cache.path()).is_empty());
}

#[test]
fn offline_uses_the_cache_and_says_so_on_a_miss() {
    let server = TestServer::start();
    let url = server.route("/offline.pth", Behavior::Serve(dp_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let err = Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()).with_offline(true))
        .unwrap_err();
    assert!(matches!(err, Error::Offline { .. }), "{err:?}");
    assert_eq!(server.counters("/offline.pth").requests, 0);
    Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()))
        .unwrap();
    Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()).with_offline(true))
        .unwrap();
    assert_eq!(server.counters("/offline.pth").requests, 1);
}

#[test]
fn a_corrupt_cache_entry_is_fetched_again() {
    let server = TestServer::start();
    let url = server.route("/entry.pth", Behavior::Serve(dp_bytes()));
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()))
        .unwrap();
    let entry = cache.path().join(&cache_files(cache.path())[0]);
    std::fs::write(&entry, b"<html>cached error page</html>").unwrap();
    let (model, _) = Classifier::new(5, &device)
        .load_pretrained(spec(&url, cache.path()))
        .unwrap();
    assert_eq!(
        assert_values_eq(&model.to_state_dict(), &expected("dataparallel"), ""),
        32
    );
    assert_eq!(server.counters("/entry.pth").requests, 2);
}

#[test]
fn secrets_stay_out_of_reports_and_errors() {
    let server = TestServer::start();
    server.route("/signed.pth", Behavior::Serve(dp_bytes()));
    let port = server.base().rsplit(':').next().unwrap().to_string();
    let signed = format!("http://user:hunter2@127.0.0.1:{port}/signed.pth?X-Amz-Signature=s3cr3t");
    let cache = tempfile::tempdir().unwrap();
    let (_, report) = Backbone::new(&Device::flex())
        .load_pretrained(spec(&signed, cache.path()).with_sub_level("backbone"))
        .unwrap();
    let shown = format!("{report}{}", serde_json::to_string(&report).unwrap());
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    assert!(report.source().starts_with("http://***@127.0.0.1:"));
    let missing = format!("http://user:hunter2@127.0.0.1:{port}/nope.pth?token=s3cr3t");
    let err = Backbone::new(&Device::flex())
        .load_pretrained(spec(&missing, cache.path()))
        .unwrap_err();
    let err = burn_pretrain::error::chain(&err);
    assert!(!err.contains("hunter2") && !err.contains("s3cr3t"), "{err}");
}

/// Every log line at every level (TRACE and up, ours and our dependencies') and every error
/// chain of loads whose locations carry secrets: userinfo, query, fragment, for http and the
/// object stores.
#[test]
fn secrets_stay_out_of_logs_at_every_verbosity() {
    let server = TestServer::start();
    server.route("/signed.pth", Behavior::Serve(dp_bytes()));
    let port = server.base().rsplit(':').next().unwrap().to_string();
    let cache = tempfile::tempdir().unwrap();
    let (errors, log) = burn_pretrain_tests::capture_logs(tracing::Level::TRACE, || {
        let ok = format!(
            "http://user:hunter2@127.0.0.1:{port}/signed.pth?token=s3cr3t#access_token=s3cr3t"
        );
        Backbone::new(&Device::flex())
            .with_pretrain(spec(&ok, cache.path()).with_sub_level("backbone"))
            .unwrap();
        let mut errors = String::new();
        for bad in [
            format!("http://user:hunter2@127.0.0.1:{port}/nope.pth?sig=s3cr3t"),
            format!("https://user:pa/hunter2@127.0.0.1:{port}/x.pth"),
            "s3://key:hunter2@bucket/x.pth".to_string(),
            "az://container/x.pth?sv=1&sig=s3cr3t".to_string(),
        ] {
            let err = Backbone::new(&Device::flex())
                .with_pretrain(spec(&bad, cache.path()))
                .unwrap_err();
            errors.push_str(&burn_pretrain::error::chain(&err));
            errors.push('\n');
        }
        errors
    });
    // The load is logged, its source redacted.
    assert!(log.contains("from http://***@127.0.0.1:"), "{log}");
    for text in [&log, &errors] {
        assert!(
            !text.contains("hunter2") && !text.contains("s3cr3t"),
            "{text}"
        );
    }
}

#[test]
fn eight_processes_one_download() {
    let server = TestServer::start();
    let url = server.route(
        "/shared.pth",
        Behavior::Slow(Duration::from_millis(300), dp_bytes()),
    );
    let cache = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(HELPER)
                .args([url.as_str(), &cache.path().display().to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    }
    assert_eq!(server.counters("/shared.pth").full_transfers, 1);
}

#[test]
fn torch_hub_cache_is_reused_without_a_download() {
    let bytes = dp_bytes();
    let digest = burn_pretrain_tests::sha256_hex(&bytes);
    let name = format!("classifier-{}.pth", &digest[..8]);
    let torch_home = tempfile::tempdir().unwrap();
    let hub = torch_home.path().join("hub").join("checkpoints");
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::write(hub.join(&name), &bytes).unwrap();
    let server = TestServer::start();
    let url = server.route(&format!("/hub/{name}"), Behavior::NotFound);
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(HELPER)
        .args([url.as_str(), &cache.path().display().to_string()])
        .env("TORCH_HOME", torch_home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    assert_eq!(server.counters(&format!("/hub/{name}")).requests, 0);
}

#[test]
fn hub_files_through_hf_hub() {
    let server = TestServer::start();
    server.route(
        "/org/classifier/resolve/main/classifier_dp.pth",
        Behavior::Serve(dp_bytes()),
    );
    server.route(
        "/org/classifier/resolve/v1.0/weights/classifier_dp.pth",
        Behavior::Serve(dp_bytes()),
    );
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    for uri in [
        "hf://org/classifier/classifier_dp.pth",
        "hf://org/classifier@v1.0/weights/classifier_dp.pth",
    ] {
        let (model, report) = Classifier::new(5, &device)
            .load_pretrained(spec(uri, cache.path()).with_endpoint(server.base()))
            .unwrap();
        assert_eq!(report.source(), uri);
        assert_eq!(
            assert_values_eq(&model.to_state_dict(), &expected("dataparallel"), ""),
            32
        );
    }
    // Cached: asking again sends nothing.
    let before = server
        .counters("/org/classifier/resolve/main/classifier_dp.pth")
        .requests;
    Classifier::new(5, &device)
        .load_pretrained(
            spec("hf://org/classifier/classifier_dp.pth", cache.path())
                .with_endpoint(server.base()),
        )
        .unwrap();
    assert_eq!(
        server
            .counters("/org/classifier/resolve/main/classifier_dp.pth")
            .requests,
        before
    );
    let err = Classifier::new(5, &device)
        .load_pretrained(
            spec("hf://org/classifier/nope.pth", cache.path()).with_endpoint(server.base()),
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

fn classifier_safetensors() -> Vec<u8> {
    std::fs::read(fixture("safetensors/classifier.safetensors")).unwrap()
}

/// Load the fixtures' backbone from `sub_level: backbone` of `body`, served at `route` and
/// read by ranges: nothing downloaded whole, nothing cached. The model, its report and what
/// the server sent.
fn ranged_backbone(
    route: &str,
    body: &[u8],
) -> (
    Backbone,
    burn_pretrain::LoadReport,
    burn_pretrain_tests::server::Counters,
) {
    let server = TestServer::start();
    let url = server.route(route, Behavior::Serve(body.to_vec()));
    let cache = tempfile::tempdir().unwrap();
    let (model, report) = Backbone::new(&Device::flex())
        .load_pretrained(
            spec(&url, cache.path())
                .with_sub_level("backbone")
                .with_ranged(true),
        )
        .unwrap();
    let sent = server.counters(route);
    eprintln!(
        "sent {} of {} bytes in {} requests; tensor bytes read {}",
        sent.bytes_sent,
        body.len(),
        sent.requests,
        report.bytes_read()
    );
    assert_eq!(sent.full_transfers, 0);
    assert!(cache_files(cache.path()).is_empty());
    (model, report, sent)
}

#[test]
fn ranged_reads_fetch_the_header_and_the_planned_tensors_only() {
    let body = classifier_safetensors();
    let (model, report, sent) = ranged_backbone("/ranged/classifier.safetensors", &body);
    assert_eq!(
        assert_values_eq(
            &model.to_state_dict(),
            &expected("safetensors"),
            "backbone."
        ),
        30
    );
    // What was sent: a probe of the first 512 bytes (format and header length), the header,
    // and the backbone's tensors — neighbours in the file — in one range; never the head's
    // tensors, and nothing was cached.
    let local =
        burn_pretrain::Checkpoint::open(fixture("safetensors/classifier.safetensors")).unwrap();
    let loaded_bytes: usize = report
        .loaded()
        .iter()
        .map(|key| {
            let e = local.get(&format!("backbone.{key}")).unwrap();
            e.num_elements() * e.dtype().size()
        })
        .sum();
    let header = 8 + u64::from_le_bytes(body[..8].try_into().unwrap()) as usize;
    assert!(sent.bytes_sent >= loaded_bytes);
    assert!(sent.bytes_sent <= 512 + header + loaded_bytes, "{sent:?}");
    assert_eq!(sent.requests, 3);
}

#[test]
fn ranged_reads_of_a_pytorch_zip_fetch_its_directory_and_the_planned_tensors_only() {
    // `split.pth`: a 512 KiB `decoder.weight` stored first, then a backbone under `backbone.`.
    let body = std::fs::read(fixture("storage/split.pth")).unwrap();
    let (model, report, sent) = ranged_backbone("/ranged/split.pth", &body);
    assert_eq!(report.loaded().len(), 30);
    // Sent: the probe, the directory and `data.pkl` (16 KiB blocks), the storages' local
    // headers, the backbone's tensors; never the decoder's 512 KiB.
    let decoder = 256 * 512 * 4;
    assert!(sent.bytes_sent >= report.bytes_read() as usize);
    assert!(sent.bytes_sent < decoder / 4, "{sent:?}");
    // The same values as a load of the file on disk.
    let (local, local_report) = Backbone::new(&Device::flex())
        .load_pretrained(
            burn_pretrain::Pretrain::from(fixture("storage/split.pth")).with_sub_level("backbone"),
        )
        .unwrap();
    // Locally exactly the tensors' bytes; remotely the holes between neighbours read
    // through (the storages' local headers, alignment padding) come on top.
    // The backbone's tensors but `num_batches_tracked`, counted from the file's own headers.
    let planned: u64 = burn_pretrain::Checkpoint::open(fixture("storage/split.pth"))
        .unwrap()
        .entries()
        .iter()
        .filter(|e| e.key().starts_with("backbone.") && !e.key().ends_with("num_batches_tracked"))
        .map(|e| (e.num_elements() * e.dtype().size()) as u64)
        .sum();
    assert!(planned > 0);
    assert_eq!(local_report.bytes_read(), planned);
    assert!(report.bytes_read() >= planned);
    let (ours, theirs) = (model.to_state_dict(), local.to_state_dict());
    assert_eq!(ours.len(), theirs.len());
    for (key, value) in &ours {
        assert_eq!(Some(value), theirs.get(key), "{key}");
    }
}

/// `ranged` with a `sha256`: a hash is of the whole file, so the file is downloaded whole and
/// checked (a warning says so) — a wrong hash fails the load as it does without `ranged`, where
/// it used to be ignored.
#[test]
fn a_ranged_load_with_a_sha256_downloads_and_checks_the_whole_file() {
    let server = TestServer::start();
    let body = classifier_safetensors();
    let digest = burn_pretrain_tests::sha256_hex(&body);
    let route = "/hashed/classifier.safetensors";
    let url = server.route(route, Behavior::Serve(body.clone()));
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let ranged = |sha256: &str| {
        spec(&url, cache.path())
            .with_sub_level("backbone")
            .with_ranged(true)
            .with_sha256(sha256)
    };
    let wrong = "0".repeat(64);
    let err = Backbone::new(&device)
        .load_pretrained(ranged(&wrong))
        .unwrap_err();
    assert!(matches!(err, Error::HashMismatch { .. }), "{err:?}");
    assert!(
        cache_files(cache.path()).is_empty(),
        "a file that failed its hash is not kept"
    );
    let (result, logs) = burn_pretrain_tests::capture_logs(tracing::Level::WARN, || {
        Backbone::new(&device).load_pretrained(ranged(&digest))
    });
    let (model, _) = result.unwrap();
    assert!(
        logs.contains("not read by ranges, downloaded whole to check its sha256"),
        "{logs}"
    );
    assert_eq!(
        assert_values_eq(
            &model.to_state_dict(),
            &expected("safetensors"),
            "backbone."
        ),
        30
    );
    let sent = server.counters(route);
    assert_eq!(sent.full_transfers, 2, "{sent:?}");
    assert_eq!(cache_files(cache.path()).len(), 1);
}

#[test]
fn ranged_reads_fall_back_to_the_cache_where_ranges_cannot_serve() {
    let server = TestServer::start();
    let cache = tempfile::tempdir().unwrap();
    let device = Device::flex();
    // A server that ignores ranges: the file is downloaded whole into the cache (the server
    // also counts the answer to the probe, which the client drops unread).
    let noranges = server.route(
        "/noranges/classifier.safetensors",
        Behavior::NoRanges(classifier_safetensors()),
    );
    let ranged = |url: &str| {
        spec(url, cache.path())
            .with_sub_level("backbone")
            .with_ranged(true)
    };
    let (model, _) = Backbone::new(&device)
        .load_pretrained(ranged(&noranges))
        .unwrap();
    assert_eq!(
        assert_values_eq(
            &model.to_state_dict(),
            &expected("safetensors"),
            "backbone."
        ),
        30
    );
    assert_eq!(
        server
            .counters("/noranges/classifier.safetensors")
            .full_transfers,
        2
    );
    // A legacy (pre-1.6) PyTorch file has no directory to read ranges by: downloaded whole
    // through the cache.
    let legacy = std::fs::read(fixture("legacy/backbone_legacy.pth")).unwrap();
    let url = server.route("/ranged/backbone_legacy.pth", Behavior::Serve(legacy));
    let (_, report) = Backbone::new(&device)
        .load_pretrained(spec(&url, cache.path()).with_ranged(true))
        .unwrap();
    assert_eq!(report.loaded().len(), 30);
    assert_eq!(
        server
            .counters("/ranged/backbone_legacy.pth")
            .full_transfers,
        1
    );
    assert_eq!(cache_files(cache.path()).len(), 2);
    // Once cached, a ranged load reads the cache and sends no request.
    let before = server.counters("/noranges/classifier.safetensors").requests;
    Backbone::new(&device)
        .load_pretrained(ranged(&noranges))
        .unwrap();
    assert_eq!(
        server.counters("/noranges/classifier.safetensors").requests,
        before
    );
}

/// Run the helper on an `s3://` URI with credentials only in its environment.
fn fetch_from_s3(uri: &str, cache: &Path, endpoint: &str) -> std::process::Output {
    fetch_from_s3_with(uri, cache, endpoint, &[])
}

fn fetch_from_s3_with(
    uri: &str,
    cache: &Path,
    endpoint: &str,
    extra: &[&str],
) -> std::process::Output {
    Command::new(HELPER)
        .args([uri, &cache.display().to_string(), endpoint])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", burn_pretrain_tests::moto::KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", burn_pretrain_tests::moto::SECRET)
        .env("AWS_REGION", "us-east-1")
        // Never the cloud metadata address, whatever the code path.
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap()
}

#[test]
fn s3_compatible_store_with_credentials_from_the_environment() {
    let Some(moto) = burn_pretrain_tests::moto::MotoServer::start() else {
        return;
    };
    moto.put("weights", "ssl/classifier_dp.pth", dp_bytes());
    let cache = tempfile::tempdir().unwrap();
    let out = fetch_from_s3(
        "s3://weights/ssl/classifier_dp.pth",
        cache.path(),
        &moto.endpoint(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every backbone tensor of the classifier checkpoint, through sub_level.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    // A missing object is a clear error.
    let out = fetch_from_s3(
        "s3://weights/ssl/missing.pth",
        cache.path(),
        &moto.endpoint(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "s3://weights/ssl/missing.pth does not exist (404)"
    );
    // Ranged reads straight from the store: the backbone's tensors load, nothing is cached;
    // for a PyTorch zip too (its directory, then the backbone's storages by ranges).
    let ranged_cache = tempfile::tempdir().unwrap();
    for (key, body) in [
        ("ssl/classifier.safetensors", classifier_safetensors()),
        (
            "ssl/split.pth",
            std::fs::read(fixture("storage/split.pth")).unwrap(),
        ),
    ] {
        moto.put("weights", key, body);
        let out = fetch_from_s3_with(
            &format!("s3://weights/{key}"),
            ranged_cache.path(),
            &moto.endpoint(),
            &["--ranged"],
        );
        assert!(
            out.status.success(),
            "{key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30", "{key}");
        assert!(cache_files(ranged_cache.path()).is_empty());
    }
}

/// Run the helper on an `az://` URI against Azurite, configured only by its environment.
fn fetch_from_azurite(
    uri: &str,
    cache: &Path,
    azurite: &str,
    extra: &[&str],
) -> std::process::Output {
    Command::new(HELPER)
        .args([uri, &cache.display().to_string()])
        .args(extra)
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env("AZURITE_BLOB_STORAGE_URL", azurite)
        .output()
        .unwrap()
}

#[test]
fn azure_blob_storage_through_azurite() {
    let Some(azurite) = burn_pretrain_tests::azurite::Azurite::start() else {
        return;
    };
    azurite.put("weights", "ssl/classifier_dp.pth", &dp_bytes());
    azurite.put(
        "weights",
        "ssl/classifier.safetensors",
        &classifier_safetensors(),
    );
    let cache = tempfile::tempdir().unwrap();
    let out = fetch_from_azurite(
        "az://weights/ssl/classifier_dp.pth",
        cache.path(),
        &azurite.url(),
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    assert_eq!(cache_files(cache.path()).len(), 1);
    // Missing blob: a clear 404.
    let out = fetch_from_azurite(
        "az://weights/ssl/missing.pth",
        cache.path(),
        &azurite.url(),
        &[],
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "az://weights/ssl/missing.pth does not exist (404)"
    );
    // Ranged: the backbone's tensors straight from the blob, nothing cached.
    let ranged_cache = tempfile::tempdir().unwrap();
    let out = fetch_from_azurite(
        "az://weights/ssl/classifier.safetensors",
        ranged_cache.path(),
        &azurite.url(),
        &["--ranged"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "30");
    assert!(cache_files(ranged_cache.path()).is_empty());
}

/// An `s3://` load with an S3-compatible endpoint and no credentials in the environment sends
/// unsigned requests to that endpoint (here moto on loopback), never asking the cloud metadata
/// address: nothing leaves 127.0.0.1, and the error says where credentials were looked for.
#[test]
fn s3_without_credentials_stays_on_the_endpoint() {
    let Some(moto) = burn_pretrain_tests::moto::MotoServer::start() else {
        return;
    };
    moto.put("public", "ssl/classifier_dp.pth", dp_bytes());
    let cache = tempfile::tempdir().unwrap();
    let mut command = Command::new(HELPER);
    command
        .args([
            "s3://public/ssl/classifier_dp.pth",
            &cache.path().display().to_string(),
            &moto.endpoint(),
        ])
        .env("AWS_REGION", "us-east-1")
        // Were the metadata service asked, it would be here: a closed loopback port.
        .env("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_PROFILE",
    ] {
        command.env_remove(var);
    }
    let out = command.output().unwrap();
    // moto refuses anonymous reads of a private bucket: the 403 comes from the endpoint on
    // loopback, and the error says where credentials were looked for.
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no AWS credentials in the environment (AWS_ACCESS_KEY_ID, "),
        "{err}"
    );
    assert!(
        err.contains("so the requests to the endpoint were unsigned"),
        "{err}"
    );
    let endpoint = moto.endpoint();
    assert!(
        err.contains(&format!("GET {endpoint}/public/ssl/classifier_dp.pth")),
        "{err}"
    );
    assert!(err.contains("403 Forbidden"), "{err}");
}
