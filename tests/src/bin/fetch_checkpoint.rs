//! Used by the source tests that need their own process (concurrency, environment):
//! plan loading `URL` (downloading it through the cache in `CACHE`) into the fixtures'
//! backbone with `sub_level = "backbone"`, and print how many tensors would load.
//!
//! With `--ranged`, load it for real by byte ranges (`Pretrain::with_ranged`) instead.
//!
//! `fetch_checkpoint URL CACHE [ENDPOINT] [--ranged]`

use burn::prelude::*;
use burn_pretrain::{Pretrain, PretrainExt};
use burn_pretrain_tests::Backbone;

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ranged = args.iter().any(|a| a == "--ranged");
    args.retain(|a| a != "--ranged");
    let mut args = args.into_iter();
    let (Some(url), Some(cache)) = (args.next(), args.next()) else {
        eprintln!("usage: fetch_checkpoint URL CACHE [ENDPOINT] [--ranged]");
        std::process::exit(2);
    };
    let mut spec = Pretrain::from(url)
        .with_cache_dir(cache)
        .with_sub_level("backbone")
        .with_ranged(ranged);
    if let Some(endpoint) = args.next() {
        spec = spec.with_endpoint(endpoint);
    }
    let model = Backbone::new(&Device::flex());
    let report = if ranged {
        model.load_pretrained(spec).map(|(_, report)| report)
    } else {
        model.plan_pretrained(spec)
    };
    match report {
        Ok(report) => println!("{}", report.loaded().len()),
        Err(e) => {
            eprintln!("{}", burn_pretrain::error::chain(&e));
            std::process::exit(1);
        }
    }
}
