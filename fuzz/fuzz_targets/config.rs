//! Config parsing (JSON, YAML or TOML, chosen by the first byte) and building through the
//! registries, `pretrain` entries removed (nothing is fetched): any text gives a model or a
//! `ConfigError`, never a panic, a hang or an abort.
#![no_main]

use burn::prelude::Device;
use burn_pretrain_models::{ConfigFormat, MODELS, parse_config, strip_pretrain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = match kind % 3 {
        0 => ConfigFormat::Json,
        1 => ConfigFormat::Yaml,
        _ => ConfigFormat::Toml,
    };
    let Ok(mut config) = parse_config(text, format, "fuzz") else {
        return;
    };
    strip_pretrain(&mut config);
    let _ = MODELS.build(&config, &Device::flex());
});
