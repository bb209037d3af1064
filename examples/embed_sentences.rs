//! Sentence embeddings as sentence-transformers computes them, and their similarities:
//!
//! ```text
//! cargo run --example embed_sentences                                              # the bundled repository
//! cargo run --example embed_sentences -- hf://sentence-transformers/all-MiniLM-L6-v2 "A cat." "A dog."
//! ```
//!
//! Opens the repository (`modules.json`, the pooling config, `tokenizer.json`, the BERT
//! encoder's config and weights), embeds the sentences in one batch and prints the cosine
//! similarity of every pair (the embeddings are normalised when the repository says so).

use burn::prelude::*;
use burn_pretrain::source::FetchOptions;
use burn_pretrain_models::sentence::SentenceEncoder;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let repository = args.next().unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/sentence/st_mean"
        )
        .into()
    });
    let mut texts: Vec<String> = args.collect();
    if texts.is_empty() {
        texts = [
            "The lazy dog sleeps.",
            "A dog is sleeping.",
            "Rust builds reliable software.",
        ]
        .map(String::from)
        .into();
    }
    let device = Device::flex();
    let encoder = SentenceEncoder::open(&repository, &FetchOptions::default(), &device)?;
    print!("{}", encoder.report);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let e = encoder.embed(&texts, &device)?;
    let norms = e.clone().powi_scalar(2).sum_dim(1).sqrt();
    let unit = e / norms;
    let similarity = unit.clone().matmul(unit.transpose());
    let values: Vec<f32> = similarity.into_data().iter::<f32>().collect();
    let n = texts.len();
    println!("cosine similarities ({} dimensions):", encoder.dimension());
    for i in 0..n {
        for j in i + 1..n {
            println!(
                "  {:+.4}  {:?} ~ {:?}",
                values[i * n + j],
                texts[i],
                texts[j]
            );
        }
    }
    Ok(())
}
