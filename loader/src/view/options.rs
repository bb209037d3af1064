//! [`ViewOptions`]: the user's say on how the checkpoint's keys are seen, and [`ViewRules`],
//! the same resolved once per load (remap patterns compiled and their replacements checked).

use std::collections::HashSet;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::convert::{self, Converter};
use crate::error::{Error, Result};
use crate::format::Convention;

/// A regex rename applied to every checkpoint key, after unwrapping and `sub_level`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remap {
    /// Regular expression matched against each key.
    pub from: String,
    /// Replacement; `$1`, `${name}` refer to capture groups.
    pub to: String,
}

/// How the checkpoint's keys are seen by the model: containers, prefixes, renames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ViewOptions {
    /// Keep only the keys under this prefix, without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_level: Option<String>,
    /// Regex renames, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remap: Vec<Remap>,
    /// Take the EMA weights instead of the raw ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ema: bool,
    /// The naming convention, instead of the format's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub convention: Option<Convention>,
    /// Unwrap containers and wrapper prefixes automatically (default on).
    #[serde(skip_serializing_if = "is_true")]
    pub unwrap: bool,
    /// Find the leading-path rewrite that makes the most keys agree with the model.
    #[serde(skip_serializing_if = "Align::is_off")]
    pub align: Align,
    /// Tensor rewrites after the remaps, in order (undone by export).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub convert: Vec<Converter>,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// Prefix alignment: when the checkpoint's keys sit under another leading path than the
/// model's (`encoder.layer1.*` for `backbone.layer1.*`), the rewrite of one leading path into
/// another (strip, add or replace) that makes the most keys agree in name and shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// Report the best rewrite as a hint only (the default).
    #[default]
    Off,
    /// Apply the best rewrite when it makes more keys agree, as a view step.
    Auto,
}

impl Align {
    fn is_off(&self) -> bool {
        *self == Align::Off
    }
}

impl Default for ViewOptions {
    fn default() -> Self {
        Self {
            sub_level: None,
            remap: Vec::new(),
            ema: false,
            convention: None,
            unwrap: true,
            align: Align::Off,
            convert: Vec::new(),
        }
    }
}

/// [`ViewOptions`] resolved: every remap compiled, its replacement checked against the
/// pattern's groups.
#[derive(Debug, Clone)]
pub(crate) struct ViewRules {
    pub sub_level: Option<String>,
    pub remaps: Vec<CompiledRemap>,
    pub ema: bool,
    pub convention: Option<Convention>,
    pub unwrap: bool,
    pub align: Align,
    pub converters: Vec<convert::Compiled>,
}

/// One remap, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRemap {
    pub re: Regex,
    pub to: String,
}

impl ViewRules {
    /// Compile `options`; a pattern that is not a regex, or a replacement naming a group the
    /// pattern lacks, is refused here, before anything is fetched.
    pub fn compile(options: &ViewOptions) -> Result<Self> {
        let remaps = options
            .remap
            .iter()
            .map(|Remap { from, to }| {
                let re = Regex::new(from).map_err(|source| Error::InvalidRemap {
                    pattern: from.clone(),
                    source,
                })?;
                check_replacement(&re, to).map_err(|detail| Error::InvalidReplacement {
                    pattern: from.clone(),
                    replacement: to.clone(),
                    detail,
                })?;
                Ok(CompiledRemap { re, to: to.clone() })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            sub_level: options.sub_level.clone(),
            remaps,
            ema: options.ema,
            convention: options.convention,
            unwrap: options.unwrap,
            align: options.align,
            converters: options
                .convert
                .iter()
                .map(convert::Compiled::new)
                .collect::<Result<_>>()?,
        })
    }
}

/// Every `$name` / `${name}` of a replacement names a group of `re`. The regex crate reads
/// `$1_` as the group named `1_` (and replaces it with nothing), a common slip for `${1}_`.
fn check_replacement(re: &Regex, to: &str) -> std::result::Result<(), String> {
    let names: HashSet<&str> = re.capture_names().flatten().collect();
    let bytes = to.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$') {
            i += 2;
            continue;
        }
        let (name, braced, end) = if bytes.get(i + 1) == Some(&b'{') {
            match to[i + 2..].find('}') {
                Some(close) => (&to[i + 2..i + 2 + close], true, i + 3 + close),
                None => return Ok(()),
            }
        } else {
            let len = to[i + 1..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&to[i + 1..i + 1 + len], false, i + 1 + len)
        };
        i = end;
        if name.is_empty() {
            continue;
        }
        let known = match name.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => names.contains(name),
        };
        if known {
            continue;
        }
        let digits: String = name
            .bytes()
            .take_while(u8::is_ascii_digit)
            .map(char::from)
            .collect();
        let fix = if !braced && !digits.is_empty() {
            format!(
                "; the regex crate reads `${name}` as one name: write `${{{digits}}}{}`",
                &name[digits.len()..]
            )
        } else {
            String::new()
        };
        return Err(format!(
            "the replacement refers to group `{name}`, which the pattern does not have{fix} (e.g. `^(\\w+)\\.(\\w+)$` → `${{1}}_${{2}}`)"
        ));
    }
    Ok(())
}
