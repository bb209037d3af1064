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

/// Make every relative local `pretrain` path (string or `path` field) relative to `dir`.
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
                            if let Some(p) = spec.get_mut("path") {
                                resolve(p);
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
            serde_yaml_ng::from_str(text).map_err(|e| parse_err("YAML", e.into()))
        }
        ConfigFormat::Toml => {
            flow_depth(text).map_err(|e| parse_err("TOML", e.into()))?;
            toml::from_str(text).map_err(|e| parse_err("TOML", e.into()))
        }
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
    // A FIFO would block the read forever, a device never end: refused before reading.
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a named pipe, socket or device)",
        )));
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse_config(&text, format, &shown)
}
