//! PEFT's `adapter_config.json` for LoRA: the fields that decide what an adapter file means.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// `target_modules`: a list of module names (a name matches a module whose path ends with it)
/// or one regular expression matched against the whole path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Targets {
    List(Vec<String>),
    Regex(String),
}

/// The LoRA fields of a PEFT adapter config; every other field PEFT writes is ignored.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LoraConfig {
    #[serde(default)]
    pub peft_type: Option<String>,
    pub r: usize,
    pub lora_alpha: f64,
    #[serde(default)]
    pub target_modules: Option<Targets>,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
}

impl LoraConfig {
    /// Parse `text`, refusing what is not a plain LoRA adapter.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let config: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match config.peft_type.as_deref() {
            Some("LORA") | None => {}
            Some(other) => {
                return Err(format!(
                    "peft_type `{other}` is not LoRA; only LoRA adapters can be applied"
                ));
            }
        }
        if config.use_dora {
            return Err("use_dora: DoRA adapters (a learned magnitude) are not supported".into());
        }
        if config.r == 0 {
            return Err("r is 0".into());
        }
        for pattern in config
            .rank_pattern
            .keys()
            .chain(config.alpha_pattern.keys())
        {
            Regex::new(&format!(r"^(.*\.)?({pattern})$"))
                .map_err(|e| format!("rank or alpha pattern `{pattern}`: {e}"))?;
        }
        if let Some(Targets::Regex(re)) = &config.target_modules {
            Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| format!("target_modules `{re}`: {e}"))?;
        }
        Ok(config)
    }

    /// The rank and alpha PEFT gives the module at `path` (`blocks.0.attn.qkv`): the first
    /// `rank_pattern` / `alpha_pattern` key that `path` ends with (as a regex after a dot),
    /// else `r` / `lora_alpha` — peft's `get_pattern_key`.
    pub fn rank_alpha(&self, path: &str) -> (usize, f64) {
        let r = pattern_value(&self.rank_pattern, path).unwrap_or(self.r);
        let alpha = pattern_value(&self.alpha_pattern, path).unwrap_or(self.lora_alpha);
        (r, alpha)
    }

    /// The scale of `B·A` for a module of rank `r` and `alpha`.
    pub fn scale(&self, r: usize, alpha: f64) -> f64 {
        if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        }
    }

    /// Whether `path` is one of the config's target modules (true without a list).
    pub fn targets(&self, path: &str) -> bool {
        match &self.target_modules {
            None => true,
            Some(Targets::List(names)) => names
                .iter()
                .any(|n| path == n || path.ends_with(&format!(".{n}"))),
            Some(Targets::Regex(re)) => Regex::new(&format!("^(?:{re})$"))
                .map(|re| re.is_match(path))
                .unwrap_or(false),
        }
    }
}

fn pattern_value<T: Copy>(patterns: &BTreeMap<String, T>, path: &str) -> Option<T> {
    // peft tries the keys in the config's order; serde_json's map without `preserve_order`
    // sorts them, which only matters when two patterns match one module.
    patterns.iter().find_map(|(pattern, value)| {
        Regex::new(&format!(r"^(.*\.)?({pattern})$"))
            .ok()
            .filter(|re| re.is_match(path))
            .map(|_| *value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_peft() {
        let config = LoraConfig::parse(
            r#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["qkv", "fc1"],
                "rank_pattern": {"blocks.1.attn.qkv": 2}, "alpha_pattern": {"fc1": 3},
                "use_rslora": true, "task_type": null}"#,
        )
        .unwrap();
        assert_eq!(config.rank_alpha("blocks.1.attn.qkv"), (2, 8.0));
        assert_eq!(config.rank_alpha("blocks.11.attn.qkv"), (4, 8.0));
        assert_eq!(config.rank_alpha("blocks.0.mlp.fc1"), (4, 3.0));
        assert!((config.scale(4, 8.0) - 4.0).abs() < 1e-12);
        assert!(config.targets("blocks.0.attn.qkv"));
        assert!(!config.targets("blocks.0.attn.proj"));
        let err =
            LoraConfig::parse(r#"{"peft_type": "IA3", "r": 4, "lora_alpha": 8}"#).unwrap_err();
        assert!(err.contains("not LoRA"), "{err}");
        let err = LoraConfig::parse(r#"{"r": 4, "lora_alpha": 8, "use_dora": true}"#).unwrap_err();
        assert!(err.contains("DoRA"), "{err}");
    }
}
