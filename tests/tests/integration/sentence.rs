//! Sentences in, vectors out: repositories written by sentence-transformers (`save`) and
//! transformers (`save_pretrained`) for a narrow random BERT with a trained WordPiece
//! vocabulary (`fixtures/sentence/generate.py`) tokenise, encode, pool and normalise as the
//! libraries do — read as local directories and from the loopback Hub.

use burn::prelude::*;
use burn_pretrain::source::FetchOptions;
use burn_pretrain_models::sentence::{Pooling, SentenceEncoder, SentenceError};
use burn_pretrain_tests::server::{Behavior, TestServer};
use burn_pretrain_tests::{fixture, relative_error, saved_tensor};

const EXPECTED: &str = "sentence/expected.safetensors";

fn sentences() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixture("sentence/sentences.json")).unwrap())
        .unwrap()
}

fn open(name: &str) -> SentenceEncoder {
    let dir = fixture(&format!("sentence/{name}"));
    SentenceEncoder::open(
        dir.to_str().unwrap(),
        &FetchOptions::default(),
        &Device::flex(),
    )
    .unwrap()
}

fn saved_ints(key: &str) -> (Vec<usize>, Vec<i64>) {
    let ckpt = burn_pretrain::Checkpoint::open(fixture(EXPECTED)).unwrap();
    let entry = ckpt.get(key).unwrap();
    let values = entry
        .read()
        .unwrap()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (entry.shape().to_vec(), values)
}

/// Per row: the cosine of ours and theirs, at least 0.9999; and the relative error.
fn assert_embeddings_match(ours: Tensor<2>, theirs: Tensor<2>, what: &str) {
    let [n, _] = theirs.dims();
    let dot = (ours.clone() * theirs.clone()).sum_dim(1);
    let norms = ours.clone().powi_scalar(2).sum_dim(1).sqrt()
        * theirs.clone().powi_scalar(2).sum_dim(1).sqrt();
    let cosines: Vec<f32> = (dot / norms).into_data().iter::<f32>().collect();
    assert_eq!(cosines.len(), n);
    for (i, c) in cosines.iter().enumerate() {
        assert!(*c >= 0.9999, "{what}: sentence {i}: cosine {c}");
    }
    let err = relative_error(ours, theirs);
    assert!(err <= 1e-4, "{what}: relative error {err:e}");
}

#[test]
fn sentence_transformers_repositories_embed_as_sentence_transformers_does() {
    let device = Device::flex();
    let texts = sentences();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for (name, pooling, normalize) in [
        ("st_mean", Pooling::Mean, true),
        ("st_cls", Pooling::Cls, false),
    ] {
        let encoder = open(name);
        assert_eq!(encoder.pooling, [pooling], "{name}");
        assert_eq!(encoder.normalize, normalize, "{name}");
        assert_eq!(encoder.max_seq_length, 16, "{name}");
        assert!(encoder.report.is_complete(), "{name}: {}", encoder.report);
        assert!(encoder.weights.ends_with("model.safetensors"));
        let ours = encoder.embed(&texts, &device).unwrap();
        assert_eq!(ours.dims(), [4, encoder.dimension()]);
        let theirs = saved_tensor::<2>(EXPECTED, &format!("{name}/embeddings"), &device);
        assert_embeddings_match(ours, theirs, name);
    }
}

#[test]
fn tokens_and_hidden_states_match_transformers() {
    let device = Device::flex();
    let texts = sentences();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    // The tokenizer: ids and mask as transformers' tokenizer gives them (truncated at 16).
    let batch = open("st_mean").tokenize(&texts).unwrap();
    let (shape, ids) = saved_ints("bert/input_ids");
    assert_eq!(batch.shape.to_vec(), shape);
    assert_eq!(batch.input_ids, ids);
    assert_eq!(batch.attention_mask, saved_ints("bert/attention_mask").1);
    // The plain transformers repository: no modules.json, so mean pooling, no normalisation;
    // last_hidden_state and pooler_output as transformers computes them.
    let bert = open("bert");
    assert_eq!(
        (bert.pooling.as_slice(), bert.normalize),
        ([Pooling::Mean].as_slice(), false)
    );
    assert!(bert.report.is_complete(), "{}", bert.report);
    let hidden = bert.encode(&batch, &device);
    let theirs = saved_tensor::<3>(EXPECTED, "bert/last_hidden_state", &device);
    let err = relative_error(hidden.clone(), theirs);
    assert!(err <= 1e-4, "last_hidden_state: relative error {err:e}");
    let pooled = bert.model.pool(hidden).unwrap();
    let theirs = saved_tensor::<2>(EXPECTED, "bert/pooler_output", &device);
    let err = relative_error(pooled, theirs);
    assert!(err <= 1e-4, "pooler_output: relative error {err:e}");
}

#[test]
fn a_sentence_encoder_from_the_loopback_hub() {
    let server = TestServer::start();
    let dir = fixture("sentence/st_mean");
    for file in [
        "config.json",
        "modules.json",
        "1_Pooling/config.json",
        "2_Normalize/config.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        server.route(
            &format!("/org/tiny-st/resolve/main/{file}"),
            Behavior::Serve(std::fs::read(dir.join(file)).unwrap()),
        );
    }
    let cache = tempfile::tempdir().unwrap();
    let mut fetch = FetchOptions::default();
    fetch.endpoint = Some(server.base());
    fetch.cache_dir = Some(cache.path().display().to_string());
    let device = Device::flex();
    let encoder = SentenceEncoder::open("hf://org/tiny-st", &fetch, &device).unwrap();
    assert_eq!(encoder.weights, "hf://org/tiny-st/model.safetensors");
    let texts = sentences();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ours = encoder.embed(&texts, &device).unwrap();
    let theirs = saved_tensor::<2>(EXPECTED, "st_mean/embeddings", &device);
    assert_embeddings_match(ours, theirs, "hf://org/tiny-st");
}

#[test]
fn what_is_not_a_sentence_encoder_says_so() {
    let timm = fixture("repos/timm_resnet");
    let err = SentenceEncoder::open(
        timm.to_str().unwrap(),
        &FetchOptions::default(),
        &Device::flex(),
    )
    .unwrap_err();
    assert!(matches!(err, SentenceError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("no `model_type`"), "{err}");
    // A BERT repository where an image model is expected names the way to open it.
    let bert = fixture("sentence/st_mean");
    let err = burn_pretrain_models::BACKBONES
        .build(
            &serde_json::json!({"from": bert.to_str().unwrap()}),
            &Device::flex(),
        )
        .unwrap_err();
    let text = burn_pretrain::error::chain(&err);
    assert!(text.contains("SentenceEncoder"), "{text}");
}

/// A copy of `st_mean` with its `config.json` changed by `edit`.
fn edited_copy(edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let src = fixture("sentence/st_mean");
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "modules.json",
        "1_Pooling/config.json",
        "2_Normalize/config.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors",
    ] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(file), to).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    dir
}

#[test]
fn a_tokenizer_or_config_of_another_model_is_an_error_not_a_panic() {
    let device = Device::flex();
    // A vocabulary smaller than the tokenizer's: the embedding is kept (reported), and the
    // ids the tokenizer gives are refused before they reach it.
    let dir = edited_copy(|c| c["vocab_size"] = 100.into());
    let encoder = SentenceEncoder::open(
        dir.path().to_str().unwrap(),
        &FetchOptions::default(),
        &device,
    )
    .unwrap();
    let kept: Vec<&str> = encoder
        .report
        .mismatched()
        .iter()
        .map(|m| m.key.as_str())
        .collect();
    assert_eq!(kept, ["embeddings.word_embeddings.weight"]);
    let err = encoder
        .embed(&["zyzzyva and the lazy dog"], &device)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("outside the model's vocabulary of 100"),
        "{err}"
    );
    // An activation not built, a pooling mode not built: named.
    let dir = edited_copy(|c| c["hidden_act"] = "gelu_new".into());
    let err = SentenceEncoder::open(
        dir.path().to_str().unwrap(),
        &FetchOptions::default(),
        &device,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("hidden_act `gelu_new` is not built"),
        "{err}"
    );
    let dir = edited_copy(|_| {});
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"embedding_dimension": 32, "pooling_mode": "lasttoken"}"#,
    )
    .unwrap();
    let err = SentenceEncoder::open(
        dir.path().to_str().unwrap(),
        &FetchOptions::default(),
        &device,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("pooling_mode `lasttoken` is not built"),
        "{err}"
    );
    assert!(err.to_string().contains("1_Pooling/config.json"), "{err}");
}
