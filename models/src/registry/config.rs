//! Config files: JSON, YAML or TOML read into one `serde_json::Value`, with guards on depth
//! and file kind, and `pretrain` paths made relative to the file's folder.

use std::path::Path;

use serde_json::Value;

use super::ConfigError;

/// Read a config file ([`read_config`]) and make its relative `pretrain` paths relative to
/// the file's folder.
pub fn read_config_file(path: &Path) -> Result<Value, ConfigError> {
    let mut config = read_config(path)?;
    if let Some(dir) = path.parent() {
        resolve_pretrain_paths(&mut config, dir);
    }
    Ok(config)
}

/// Remove every `pretrain` entry of a config, at any level: to build the model alone.
pub fn strip_pretrain(config: &mut Value) {
    match config {
        Value::Object(map) => {
            map.remove("pretrain");
            map.values_mut().for_each(strip_pretrain);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_pretrain),
        _ => {}
    }
}

/// Every local checkpoint a config's `pretrain` entries name, at any level (as
/// [`read_config_file`] left them: relative to the config's folder already), with the files of
/// a local PEFT `adapter` directory. URLs are left out.
pub fn local_pretrain_paths(config: &Value) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    fn walk(value: &Value, out: &mut Vec<std::path::PathBuf>) {
        let local = |p: &Value, out: &mut Vec<std::path::PathBuf>| {
            if let Value::String(s) = p
                && !s.is_empty()
                && let Ok(burn_pretrain::source::Location::Local(path)) =
                    burn_pretrain::source::Location::parse(s)
            {
                out.push(path);
            }
        };
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("pretrain", Value::Object(spec)) => {
                            if let Some(p) = spec.get("path") {
                                local(p, out);
                            }
                            if let Some(Value::String(dir)) = spec.get("adapter") {
                                for file in ["adapter_model.safetensors", "adapter_config.json"] {
                                    local(&Value::String(format!("{dir}/{file}")), out);
                                }
                            }
                        }
                        ("pretrain", other) => local(other, out),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(config, &mut out);
    out
}

/// Make every relative local `pretrain` path (string, `path` or `adapter` field) relative to
/// `dir`.
fn resolve_pretrain_paths(value: &mut Value, dir: &Path) {
    let resolve = |p: &mut Value| {
        // An empty path stays empty, to be refused as such (not read as the config's folder).
        if let Value::String(s) = p
            && !s.is_empty()
            && !s.contains("://")
            && Path::new(s.as_str()).is_relative()
        {
            *s = dir.join(s.as_str()).display().to_string();
        }
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "pretrain" {
                    match v {
                        Value::Object(spec) => {
                            for field in ["path", "adapter"] {
                                if let Some(p) = spec.get_mut(field) {
                                    resolve(p);
                                }
                            }
                        }
                        other => resolve(other),
                    }
                } else {
                    resolve_pretrain_paths(v, dir);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| resolve_pretrain_paths(v, dir)),
        _ => {}
    }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The text formats a config can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// `.json`.
    Json,
    /// `.yaml` / `.yml`.
    Yaml,
    /// `.toml`.
    Toml,
}

/// Parse config text into a value the registries build from.
pub fn parse_config(text: &str, format: ConfigFormat, file: &str) -> Result<Value, ConfigError> {
    let parse_err = |format: &'static str, source: Box<dyn std::error::Error + Send + Sync>| {
        ConfigError::Parse {
            file: file.to_string(),
            format,
            source,
        }
    };
    match format {
        ConfigFormat::Json => serde_json::from_str(text).map_err(|e| parse_err("JSON", e.into())),
        ConfigFormat::Yaml => {
            flow_depth(text).map_err(|e| parse_err("YAML", e.into()))?;
            let own: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(text).map_err(|e| parse_err("YAML", e.into()))?;
            finite_yaml(&own, &mut String::new()).map_err(|e| parse_err("YAML", e.into()))?;
            serde_yaml_ng::from_str(text).map_err(|e| parse_err("YAML", e.into()))
        }
        ConfigFormat::Toml => {
            flow_depth(text).map_err(|e| parse_err("TOML", e.into()))?;
            let own: toml::Table = toml::from_str(text).map_err(|e| parse_err("TOML", e.into()))?;
            for (key, value) in &own {
                finite_toml(value, &mut key.clone()).map_err(|e| parse_err("TOML", e.into()))?;
            }
            toml::from_str(text).map_err(|e| parse_err("TOML", e.into()))
        }
    }
}

/// The error of a number no config value can be: JSON has no NaN or infinity, so read into
/// the one config value they would silently become `null` (a field left at its default) or be
/// taken where a number is required.
fn not_finite(path: &str, value: f64) -> String {
    let at = if path.is_empty() {
        "the document"
    } else {
        path
    };
    format!("`{at}` is {value}, not a finite number")
}

/// `path.key` / `path[i]`.
fn descend(path: &mut String, step: impl std::fmt::Display, index: bool) -> usize {
    let len = path.len();
    if index {
        path.push_str(&format!("[{step}]"));
    } else {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(&step.to_string());
    }
    len
}

/// Refuse YAML's `.nan` / `.inf` anywhere in the document.
fn finite_yaml(value: &serde_yaml_ng::Value, path: &mut String) -> Result<(), String> {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Number(n) if n.is_nan() || n.is_infinite() => {
            Err(not_finite(path, n.as_f64().unwrap_or(f64::NAN)))
        }
        Y::Sequence(items) => items.iter().enumerate().try_for_each(|(i, v)| {
            let len = descend(path, i, true);
            let out = finite_yaml(v, path);
            path.truncate(len);
            out
        }),
        Y::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            let name = match k {
                Y::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other)
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default(),
            };
            finite_yaml(k, path)?;
            let len = descend(path, name, false);
            let out = finite_yaml(v, path);
            path.truncate(len);
            out
        }),
        Y::Tagged(tagged) => finite_yaml(&tagged.value, path),
        _ => Ok(()),
    }
}

/// Refuse TOML's `nan` / `inf` anywhere in the document.
fn finite_toml(value: &toml::Value, path: &mut String) -> Result<(), String> {
    use toml::Value as T;
    match value {
        T::Float(f) if !f.is_finite() => Err(not_finite(path, *f)),
        T::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| {
            let len = descend(path, i, true);
            let out = finite_toml(v, path);
            path.truncate(len);
            out
        }),
        T::Table(table) => table.iter().try_for_each(|(k, v)| {
            let len = descend(path, k, false);
            let out = finite_toml(v, path);
            path.truncate(len);
            out
        }),
        _ => Ok(()),
    }
}

/// The deepest nesting of a config, as serde_json allows it.
const MAX_DEPTH: usize = 128;

/// Refuse YAML or TOML nested deeper than [`MAX_DEPTH`] brackets before the parser sees it:
/// the YAML parser takes quadratic time on deep flow collections (a minute for 100,000
/// levels) before its own recursion limit stops it, and TOML's error would quote the whole
/// line. Every `[`/`{` counts, quoted or not, so no quote can hide a bomb from this check; a
/// real config never holds 128 unclosed brackets inside its strings.
fn flow_depth(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for (line, content) in text.lines().enumerate() {
        for (column, c) in content.chars().enumerate() {
            match c {
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!(
                            "nested deeper than {MAX_DEPTH} levels (at line {}, column {})",
                            line + 1,
                            column + 1
                        ));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The largest config file read (real ones take a few kilobytes).
const CONFIG_LIMIT: u64 = 16 << 20;

/// Read a config file, its format chosen by extension (`.json`, `.yaml`/`.yml`, `.toml`).
pub fn read_config(path: &Path) -> Result<Value, ConfigError> {
    let shown = path.display().to_string();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => ConfigFormat::Json,
        Some("yaml" | "yml") => ConfigFormat::Yaml,
        Some("toml") => ConfigFormat::Toml,
        _ => {
            return Err(ConfigError::Parse {
                file: shown,
                format: "JSON, YAML or TOML",
                source: format!(
                    "unknown extension{}; use .json, .yaml, .yml or .toml",
                    match path.extension() {
                        Some(e) => format!(" `.{}`", e.to_string_lossy()),
                        None => " (none)".into(),
                    }
                )
                .into(),
            });
        }
    };
    let read_err = |source| ConfigError::Read {
        path: shown.clone(),
        source,
    };
    // A FIFO would block the read forever, a device never end: refused before reading, with
    // the guards of every file a spec names.
    let text =
        burn_pretrain::source::local::read_bounded_text(path, CONFIG_LIMIT).map_err(read_err)?;
    parse_config(&text, format, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON has no NaN or infinity: read into a JSON value, YAML's `.nan` became `null` (the
    /// field silently at its default) and `.inf` likewise; TOML's `nan`/`inf` too. Each is
    /// refused, naming where it is.
    #[test]
    fn non_finite_numbers_are_refused_naming_their_key() {
        for (text, format, at) in [
            (
                "type: VisionTransformer\nmlp_ratio: .nan\n",
                ConfigFormat::Yaml,
                "`mlp_ratio` is NaN",
            ),
            (
                "backbone:\n  drop: [0.1, -.inf]\n",
                ConfigFormat::Yaml,
                "`backbone.drop[1]` is -inf",
            ),
            (
                "type = \"ResNet\"\n[pretrain]\ntimeout = inf\n",
                ConfigFormat::Toml,
                "`pretrain.timeout` is inf",
            ),
            ("ratio = nan\n", ConfigFormat::Toml, "`ratio` is NaN"),
        ] {
            let err = parse_config(text, format, "c").unwrap_err();
            let text = burn_pretrain::error::chain(&err);
            assert!(text.contains(at), "{text}");
            assert!(text.contains("not a finite number"), "{text}");
        }
        let fine = parse_config("mlp_ratio: 4.0\nname: .nan\n", ConfigFormat::Yaml, "c");
        assert!(fine.is_err(), "`.nan` unquoted is a number in YAML");
        let quoted = parse_config("mlp_ratio: 4.0\nname: '.nan'\n", ConfigFormat::Yaml, "c");
        assert_eq!(quoted.unwrap()["name"], ".nan");
    }
}
