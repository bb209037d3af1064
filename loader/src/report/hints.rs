//! "Did you mean" hints, as data ([`Hint`]: what kind, the keys on each side, the remap or
//! setting that would fix it, a score) with the text people read (its `Display`).

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::fold::group_by;
use crate::plan::{Action, Plan};
use crate::view::{Remap, Rewrite};

/// What a [`Hint`] suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HintKind {
    /// A leading path of the checkpoint's keys rewritten (stripped, added, replaced) makes
    /// more keys agree with the model's in name and shape.
    Prefix,
    /// Every tensor under a model parent is under another parent in the checkpoint, with the
    /// same leaf names and shapes.
    RenamedParent,
    /// Model and checkpoint keys with the same name tokens and shapes, arranged otherwise.
    SameTensors,
    /// A missing key and an unexpected one with the same shape and most of the name.
    NearName,
    /// A stored tensor whose dtype cannot become the model's.
    Dtype,
}

/// A suggestion for keys that almost matched: serialised as data, displayed as a sentence.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Hint {
    kind: HintKind,
    /// The model keys (or, for a prefix or parent, the model's path) concerned.
    model_keys: Vec<String>,
    /// The checkpoint keys (or path) they correspond to.
    checkpoint_keys: Vec<String>,
    /// The remap that would make them agree, where one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    remap: Option<Remap>,
    /// The `sub_level` that would, where one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_level: Option<String>,
    /// How many model tensors would agree (prefix, parent, pairs) or how many key segments
    /// agree (near name).
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<usize>,
    /// The sentence people read (also the `Display`).
    message: String,
}

impl Hint {
    /// What it suggests.
    pub fn kind(&self) -> HintKind {
        self.kind
    }

    /// The model keys (or path) concerned.
    pub fn model_keys(&self) -> &[String] {
        &self.model_keys
    }

    /// The checkpoint keys (or path) they correspond to.
    pub fn checkpoint_keys(&self) -> &[String] {
        &self.checkpoint_keys
    }

    /// The remap to write, if one would fix it.
    pub fn remap(&self) -> Option<&Remap> {
        self.remap.as_ref()
    }

    /// The `sub_level` to set, if one would fix it.
    pub fn sub_level(&self) -> Option<&str> {
        self.sub_level.as_deref()
    }

    /// The tensors that would agree, or the segments that do (near names).
    pub fn score(&self) -> Option<usize> {
        self.score
    }

    /// The sentence people read.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(kind: HintKind, model_keys: Vec<String>, checkpoint_keys: Vec<String>) -> Self {
        Self {
            kind,
            model_keys,
            checkpoint_keys,
            remap: None,
            sub_level: None,
            score: None,
            message: String::new(),
        }
    }

    /// The view's best leading-path rewrite, when it was not applied.
    pub(super) fn prefix(rewrite: &Rewrite) -> Self {
        let (what, how, remap, sub_level) = match (rewrite.from.is_empty(), rewrite.to.is_empty()) {
            (false, true) => (
                format!("stripping `{}.` from checkpoint keys", rewrite.from),
                format!("set sub_level \"{}\" or align: auto", rewrite.from),
                None,
                Some(rewrite.from.clone()),
            ),
            (true, _) => (
                format!("adding `{}.` in front of checkpoint keys", rewrite.to),
                format!("set align: auto, or remap `^` → `{}.`", rewrite.to),
                Some(remap("^".into(), format!("{}.", rewrite.to))),
                None,
            ),
            (false, false) => {
                let from = format!("^{}", regex::escape(&format!("{}.", rewrite.from)));
                (
                    format!(
                        "rewriting checkpoint `{}.` to `{}.`",
                        rewrite.from, rewrite.to
                    ),
                    format!("set align: auto, or remap `{from}` → `{}.`", rewrite.to),
                    Some(remap(from, format!("{}.", rewrite.to))),
                    None,
                )
            }
        };
        Self {
            remap,
            sub_level,
            score: Some(rewrite.agree),
            message: format!(
                "{what} makes {} of {} model tensors agree in name and shape (now {}): {how}",
                rewrite.agree, rewrite.total, rewrite.before
            ),
            ..Self::new(
                HintKind::Prefix,
                vec![rewrite.to.clone()],
                vec![rewrite.from.clone()],
            )
        }
    }

    /// Every pair under `model_parent` ↔ `stored_parent` agrees in leaf names and shapes; a
    /// `*` in both stands for the same layer index.
    fn renamed_parent(model_parent: &str, stored_parent: &str, pairs: &[(&str, &str)]) -> Self {
        let mut group = 0;
        let from: Vec<String> = stored_parent
            .split('.')
            .map(|s| match s {
                "*" => r"(\d+)".to_string(),
                s => regex::escape(s),
            })
            .collect();
        let to: Vec<String> = model_parent
            .split('.')
            .map(|s| match s {
                "*" => {
                    group += 1;
                    format!("${{{group}}}")
                }
                s => s.to_string(),
            })
            .collect();
        let from = format!("^{}\\.", from.join("\\."));
        let to = format!("{}.", to.join("."));
        // Only the last name differs: the field's rename says it once in the model.
        let rename = match (
            model_parent.rsplit_once('.'),
            stored_parent.rsplit_once('.'),
        ) {
            (Some((a, field)), Some((b, stored))) if a == b => {
                format!(", or `#[pretrain(rename = \"{stored}\")]` on the field `{field}`")
            }
            (None, None) => {
                format!(
                    ", or `#[pretrain(rename = \"{stored_parent}\")]` on the field `{model_parent}`"
                )
            }
            _ => String::new(),
        };
        Self {
            message: format!(
                "model `{model_parent}.*` ↔ checkpoint `{stored_parent}.*`: {} tensors agree in name and shape; remap `{from}` → `{to}`{rename}",
                pairs.len(),
            ),
            remap: Some(remap(from, to)),
            score: Some(pairs.len()),
            ..Self::new(
                HintKind::RenamedParent,
                vec![model_parent.to_string()],
                vec![stored_parent.to_string()],
            )
        }
    }

    /// The `n` missing tensors under `model_path` are those under `stored_path` by leaf path
    /// and shape.
    fn renamed_subtree(model_path: &str, stored_path: &str, n: usize) -> Self {
        let from = format!("^{}", regex::escape(&format!("{stored_path}.")));
        let to = format!("{model_path}.");
        Self {
            message: format!(
                "model `{model_path}.*` ↔ checkpoint `{stored_path}.*`: the same {n} tensors (leaf names and shapes) under another name; remap `{from}` → `{to}`"
            ),
            remap: Some(remap(from, to)),
            score: Some(n),
            ..Self::new(
                HintKind::RenamedParent,
                vec![model_path.to_string()],
                vec![stored_path.to_string()],
            )
        }
    }

    /// Pairs of keys with the same tokens and shapes, not one rename of a path.
    fn same_tensors(pairs: &[(&str, &str)]) -> Self {
        let shown: Vec<String> = pairs
            .iter()
            .take(3)
            .map(|(m, c)| format!("`{m}` ↔ checkpoint `{c}`"))
            .collect();
        let more = match pairs.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        Self {
            message: format!(
                "same tensors under other names (model ↔ checkpoint, equal shapes): {}{more}; remap them",
                shown.join(", ")
            ),
            score: Some(pairs.len()),
            ..Self::new(
                HintKind::SameTensors,
                pairs.iter().map(|(m, _)| m.to_string()).collect(),
                pairs.iter().map(|(_, c)| c.to_string()).collect(),
            )
        }
    }

    /// A missing `key` and the unexpected `stored` with its shape and `score` segments.
    fn near_name(key: &str, stored: &str, score: usize) -> Self {
        Self {
            message: format!(
                "`{key}` is missing; the checkpoint has `{stored}` with the same shape (rename or remap?)"
            ),
            score: Some(score),
            ..Self::new(
                HintKind::NearName,
                vec![key.to_string()],
                vec![stored.to_string()],
            )
        }
    }

    /// `key` is stored as `stored`, which cannot become the model's `model` dtype.
    pub(super) fn dtype(key: &str, stored: &str, model: &str) -> Self {
        Self {
            message: format!(
                "`{key}` is stored as {stored}, which cannot become the model's {model}"
            ),
            ..Self::new(
                HintKind::Dtype,
                vec![key.to_string()],
                vec![key.to_string()],
            )
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn remap(from: String, to: String) -> Remap {
    Remap { from, to }
}

/// "Did you mean" hints: groups of missing and unexpected keys that agree in tokens and
/// shapes whatever the case, depth or arrangement of their names (`conv1_bn.*` ↔
/// `conv1_BN.*`, `lstm.layers.0.weight_ih` ↔ `lstm.weight_ih_l0`); then, for the rest, an
/// unexpected key sharing a missing one's shape and most of its name (unless a prefix
/// rewrite was already suggested).
pub(super) fn hints(plan: &Plan, aligned: bool) -> Vec<Hint> {
    let mut out = Vec::new();
    let missing: Vec<(&str, Vec<usize>)> = plan
        .items
        .iter()
        .filter(|i| matches!(i.action, Action::Missing))
        .map(|i| (i.target.key.as_str(), i.target.checkpoint_shape()))
        .collect();
    if missing.is_empty() || plan.unexpected.is_empty() {
        return out;
    }
    // Unexpected keys by (tokens, shape); a token set shared by two keys pairs nothing.
    let mut by_tokens: HashMap<(Vec<String>, &[usize]), Option<&str>> = HashMap::new();
    for (key, shape) in &plan.unexpected {
        by_tokens
            .entry((tokens(key), shape.as_slice()))
            .and_modify(|slot| *slot = None)
            .or_insert(Some(key.as_str()));
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (key, shape) in &missing {
        if let Some(Some(found)) = by_tokens.get(&(tokens(key), shape.as_slice()))
            && !roles_differ(key, found)
        {
            pairs.push((key, found));
        }
    }
    // Group by the two parents: a group whose leaves agree is one rename of a path.
    // Parents that differ only in a name, at the same layer indices in both, are one group
    // across the layers (`blocks.*.layer_norm` ↔ `blocks.*.LayerNorm`).
    let groups: Vec<PairGroup> = group_by(pairs.iter().copied(), |(model, stored)| {
        let (model, stored) = (parent(model), parent(stored));
        numbered(model, stored).unwrap_or_else(|| (model.to_string(), stored.to_string()))
    });
    for ((model_parent, stored_parent), list) in &groups {
        let same_leaves = list.iter().all(|(m, c)| leaf(m) == leaf(c));
        if same_leaves && !model_parent.is_empty() && !stored_parent.is_empty() {
            out.push(Hint::renamed_parent(model_parent, stored_parent, list));
        } else {
            out.push(Hint::same_tensors(list));
        }
    }
    let mut paired: HashSet<&str> = pairs.iter().map(|(m, _)| *m).collect();
    let used: HashSet<&str> = pairs.iter().map(|(_, c)| *c).collect();
    // Whole subtrees under another name, among the keys still unpaired.
    let rest_missing: Vec<(&str, Vec<usize>)> = missing
        .iter()
        .filter(|(k, _)| !paired.contains(k))
        .cloned()
        .collect();
    let rest_unexpected: Vec<(&str, &[usize])> = plan
        .unexpected
        .iter()
        .filter(|(k, _)| !used.contains(k.as_str()))
        .map(|(k, s)| (k.as_str(), s.as_slice()))
        .collect();
    // (Under a prefix rewrite every subtree looks renamed: that one hint says it.)
    let renamed = match aligned {
        true => Vec::new(),
        false => renamed_subtrees(&rest_missing, &rest_unexpected),
    };
    for (model_path, stored_path, n) in renamed {
        let under =
            |k: &str| k.starts_with(model_path.as_str()) && k[model_path.len()..].starts_with('.');
        paired.extend(rest_missing.iter().map(|(k, _)| *k).filter(|k| under(k)));
        out.push(Hint::renamed_subtree(&model_path, &stored_path, n));
    }
    if aligned {
        // A prefix rewrite explains the rest better than key-by-key guesses.
        return out;
    }
    // Near names with the same shape.
    for (key, want) in missing.iter().filter(|(k, _)| !paired.contains(k)).take(10) {
        let best = plan
            .unexpected
            .iter()
            .filter(|(stored, shape)| shape == want && !roles_differ(stored, key))
            .map(|(stored, _)| (similarity(stored, key), stored))
            .filter(|(score, _)| *score >= 2)
            .max_by_key(|(score, _)| *score);
        if let Some((score, stored)) = best {
            out.push(Hint::near_name(key, stored, score));
        }
    }
    out
}

/// Pairs of (model key, checkpoint key) under one (model parent, checkpoint parent).
type PairGroup<'a> = ((String, String), Vec<(&'a str, &'a str)>);

/// Two parents with the same layer index at each numeric segment, those segments as `*`
/// (`blocks.3.layer_norm`, `blocks.3.LayerNorm` → `blocks.*.layer_norm`, `blocks.*.LayerNorm`);
/// `None` without such a segment or where the indices or depths differ.
fn numbered(model: &str, stored: &str) -> Option<(String, String)> {
    let (m, c): (Vec<&str>, Vec<&str>) = (model.split('.').collect(), stored.split('.').collect());
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if m.len() != c.len() || !m.iter().any(|s| numeric(s)) {
        return None;
    }
    let mut out = (Vec::new(), Vec::new());
    for (a, b) in m.iter().zip(&c) {
        match (numeric(a), numeric(b)) {
            (true, true) if a == b => {
                out.0.push("*");
                out.1.push("*");
            }
            (false, false) => {
                out.0.push(a);
                out.1.push(b);
            }
            _ => return None,
        }
    }
    Some((out.0.join("."), out.1.join(".")))
}

/// A key's name tokens, order and case aside: split at `.`, `_` and CamelCase word starts
/// (`LayerNorm` is `layer_norm`), lowercased, `l0` (a
/// PyTorch RNN layer suffix) read as `0`, the container word `layers` dropped; sorted.
fn tokens(key: &str) -> Vec<String> {
    let mut out: Vec<String> = key
        .split(['.', '_'])
        .filter(|t| !t.is_empty())
        .flat_map(camel_words)
        .map(|t| t.to_lowercase())
        .filter(|t| t != "layers")
        .map(|t| match t.strip_prefix('l') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n.to_string(),
            _ => t,
        })
        .collect();
    out.sort_unstable();
    out
}

/// `LayerNorm` → `Layer`, `Norm`; `conv1BN` → `conv1`, `BN`; `HTTPServer` → `HTTP`, `Server`.
fn camel_words(word: &str) -> Vec<&str> {
    let bytes = word.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..bytes.len() {
        let (prev, cur) = (bytes[i - 1], bytes[i]);
        let next_lower = bytes.get(i + 1).is_some_and(u8::is_ascii_lowercase);
        let starts = cur.is_ascii_uppercase()
            && (prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower));
        if starts {
            out.push(&word[start..i]);
            start = i;
        }
    }
    out.push(&word[start..]);
    out
}

/// What an attention projection is for, whatever the family calls it: two keys for
/// different roles (`value` and `out_proj`) are never one tensor renamed, however alike their
/// names and shapes.
fn role(key: &str) -> Option<&'static str> {
    key.split('.').rev().find_map(|segment| match segment {
        "query" | "q" | "q_proj" | "q_lin" | "wq" => Some("query"),
        "key" | "k" | "k_proj" | "k_lin" | "wk" => Some("key"),
        "value" | "v" | "v_proj" | "v_lin" | "wv" => Some("value"),
        "out_proj" | "o_proj" | "out_lin" | "wo" | "output" | "o" => Some("output"),
        "gate_proj" | "w1" => Some("gate"),
        "up_proj" | "w3" => Some("up"),
        "down_proj" | "w2" => Some("down"),
        _ => None,
    })
}

/// Two keys that name different projection roles.
fn roles_differ(a: &str, b: &str) -> bool {
    matches!((role(a), role(b)), (Some(x), Some(y)) if x != y)
}

/// Subtrees renamed whole: a model path whose missing tensors are, leaf path for leaf path and
/// shape for shape, exactly those of one checkpoint path with another name (`rnn.*` ↔
/// `lstm.*`, `proj.*` ↔ `linear.*`). A shape pattern shared by two paths on either side pairs
/// nothing; a pair inside an already paired subtree is not repeated.
fn renamed_subtrees<'a>(
    missing: &[(&'a str, Vec<usize>)],
    unexpected: &[(&'a str, &'a [usize])],
) -> Vec<(String, String, usize)> {
    type Signature = Vec<(String, Vec<usize>)>;
    fn signatures<'k>(
        keys: impl Iterator<Item = (&'k str, &'k [usize])>,
    ) -> HashMap<String, Signature> {
        let mut out: HashMap<String, Signature> = HashMap::new();
        for (key, shape) in keys {
            for (i, _) in key.match_indices('.') {
                out.entry(key[..i].to_string())
                    .or_default()
                    .push((key[i + 1..].to_string(), shape.to_vec()));
            }
        }
        for signature in out.values_mut() {
            signature.sort();
        }
        out
    }
    /// Signature → the one path with it (None when two share it).
    fn unique(map: HashMap<String, Signature>) -> HashMap<Signature, Option<String>> {
        let mut out: HashMap<Signature, Option<String>> = HashMap::new();
        for (path, signature) in map {
            out.entry(signature)
                .and_modify(|slot| *slot = None)
                .or_insert(Some(path));
        }
        out
    }
    let model = unique(signatures(missing.iter().map(|(k, s)| (*k, s.as_slice()))));
    let stored = unique(signatures(unexpected.iter().copied()));
    let mut found: Vec<(String, String, usize)> = model
        .iter()
        .filter_map(|(signature, path)| {
            let path = path.as_ref()?;
            let other = stored.get(signature)?.as_ref()?;
            (path != other).then(|| (path.clone(), other.clone(), signature.len()))
        })
        .collect();
    // Outermost first; a pair below a kept pair says nothing new.
    found.sort_by_key(|(path, _, _)| (path.matches('.').count(), path.clone()));
    let mut kept: Vec<(String, String, usize)> = Vec::new();
    for (path, other, n) in found {
        let inside = kept
            .iter()
            .any(|(p, _, _)| path.starts_with(p.as_str()) && path[p.len()..].starts_with('.'));
        if !inside {
            kept.push((path, other, n));
        }
    }
    kept
}

fn parent(key: &str) -> &str {
    key.rsplit_once('.').map_or("", |(p, _)| p)
}

fn leaf(key: &str) -> &str {
    key.rsplit_once('.').map_or(key, |(_, l)| l)
}

/// Shared leading plus trailing segments of two dotted keys.
fn similarity(a: &str, b: &str) -> usize {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (head + tail).min(a.len().min(b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_ignore_case_order_depth_and_rnn_layer_suffixes() {
        assert_eq!(tokens("conv1_bn.weight"), tokens("conv1_BN.weight"));
        assert_eq!(
            tokens("lstm.layers.0.weight_ih"),
            tokens("lstm.weight_ih_l0")
        );
        assert_ne!(
            tokens("lstm.layers.0.weight_ih"),
            tokens("lstm.weight_ih_l1")
        );
        assert_ne!(tokens("conv1.weight"), tokens("conv2.weight"));
        assert_eq!(
            tokens("encoder.LayerNorm.weight"),
            tokens("encoder.layer_norm.weight")
        );
        assert_eq!(camel_words("HTTPServer"), ["HTTP", "Server"]);
        assert_eq!(camel_words("conv1BN"), ["conv1", "BN"]);
    }

    #[test]
    fn projections_of_different_roles_never_pair() {
        assert!(roles_differ(
            "attention.self.out_proj.weight",
            "attention.self.value.weight"
        ));
        assert!(!roles_differ("attn.q_proj.weight", "attn.query.weight"));
        assert!(!roles_differ("fc.weight", "attn.query.weight"));
    }

    #[test]
    fn whole_subtrees_pair_by_leaf_paths_and_shapes() {
        let missing = vec![
            ("rnn.weight_ih_l0", vec![24, 4]),
            ("rnn.bias_ih_l0", vec![24]),
            ("proj.weight", vec![3, 6]),
            ("proj.bias", vec![3]),
        ];
        let unexpected: Vec<(&str, &[usize])> = vec![
            ("lstm.weight_ih_l0", &[24, 4]),
            ("lstm.bias_ih_l0", &[24]),
            ("linear.weight", &[3, 6]),
            ("linear.bias", &[3]),
        ];
        let mut found = renamed_subtrees(&missing, &unexpected);
        found.sort();
        assert_eq!(
            found,
            [
                ("proj".to_string(), "linear".to_string(), 2),
                ("rnn".to_string(), "lstm".to_string(), 2)
            ]
        );
        // Two checkpoint paths with the same tensors: neither is the one.
        let unexpected: Vec<(&str, &[usize])> = vec![
            ("a.weight", &[3, 6]),
            ("a.bias", &[3]),
            ("b.weight", &[3, 6]),
            ("b.bias", &[3]),
        ];
        assert!(renamed_subtrees(&missing[2..], &unexpected).is_empty());
    }
}
