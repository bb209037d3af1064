//! `pretrain embed SOURCE TEXT...`: one vector per sentence, as sentence-transformers computes
//! it from the repository (tokeniser, encoder, pooling, normalisation).

use anyhow::Context;
use burn_pretrain::source::FetchOptions;
use burn_pretrain_models::sentence::SentenceEncoder;
use serde_json::json;

use crate::cli::EmbedArgs;
use crate::{load, npy, output};

pub fn run(args: EmbedArgs) -> anyhow::Result<i32> {
    let device = load::device(&args.device)?;
    let encoder = SentenceEncoder::open(&args.source, &FetchOptions::default(), &device)
        .with_context(|| format!("sentence encoder {}", args.source))?;
    tracing::info!("{}", encoder.report);
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let embeddings = encoder.embed(&texts, &device)?;
    let [n, dimension] = embeddings.dims();
    let values: Vec<f32> = embeddings.into_data().iter::<f32>().collect();
    if let Some(path) = &args.output {
        npy::write_f32(path, &[n, dimension], &values)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let pooling: Vec<&str> = encoder.pooling.iter().map(|p| p.name()).collect();
    if args.json {
        let rows: Vec<_> = texts
            .iter()
            .zip(values.chunks(dimension))
            .map(|(text, row)| json!({"text": text, "embedding": row}))
            .collect();
        output::print_json(&json!({
            "source": args.source,
            "weights": encoder.weights,
            "dimension": dimension,
            "pooling": pooling,
            "normalize": encoder.normalize,
            "max_seq_length": encoder.max_seq_length,
            "embeddings": rows,
        }))?;
    } else {
        let mut text = format!(
            "{}: {n} texts, {dimension} dimensions ({} pooling{}, at most {} tokens) from {}\n",
            args.source,
            pooling.join("+"),
            if encoder.normalize {
                ", normalised"
            } else {
                ""
            },
            encoder.max_seq_length,
            encoder.weights
        );
        for (t, row) in texts.iter().zip(values.chunks(dimension)) {
            let head: Vec<String> = row.iter().take(4).map(|v| format!("{v:+.4}")).collect();
            text.push_str(&format!("  [{}, …] {t:?}\n", head.join(", ")));
        }
        if let Some(path) = &args.output {
            text.push_str(&format!("saved to {} [{n}, {dimension}]\n", path.display()));
        }
        output::print(&text)?;
    }
    Ok(0)
}
