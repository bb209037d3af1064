//! Used by the source tests that need their own process (concurrency, environment):
//! plan loading `URL` (downloading it through the cache in `CACHE`) into the fixtures'
//! backbone with `sub_level = "backbone"`, and print how many tensors would load.
//!
//! `fetch_checkpoint URL CACHE [ENDPOINT]`

use burn::prelude::*;
use burn_pretrain::{Pretrain, PretrainExt};
use burn_pretrain_tests::Backbone;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(cache)) = (args.next(), args.next()) else {
        eprintln!("usage: fetch_checkpoint URL CACHE [ENDPOINT]");
        std::process::exit(2);
    };
    let mut spec = Pretrain::from(url)
        .with_cache_dir(cache)
        .with_sub_level("backbone");
    if let Some(endpoint) = args.next() {
        spec = spec.with_endpoint(endpoint);
    }
    match Backbone::new(&Device::flex()).plan_pretrained(spec) {
        Ok(report) => println!("{}", report.loaded().len()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
