//! The repeated-layer check: a checkpoint and a model that differ in how many layers of a
//! list they have (a 3-layer `nn.LSTM` for a 2-layer model, `blocks.0…5` for 5 blocks, a
//! 12-layer encoder for a 6-layer checkpoint) load every tensor they share and look
//! complete from the model's side; this names the counts instead.
//!
//! A key repeats a layer at an *index*: a numeric segment (`blocks.3.fc.weight`) or PyTorch's
//! recurrent suffix (`weight_ih_l2`, `weight_hh_l2_reverse`). Keys that differ only in that
//! index belong to one *family* (`blocks`, or `rnn`'s `_l` layers).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::report::{LoadReport, fold_keys};

/// How a family numbers its layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Style {
    /// `blocks.3.…`.
    Segment,
    /// `rnn.weight_ih_l3`.
    Suffix,
}

/// Layers repeated under one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Family {
    prefix: String,
    style: Style,
}

impl Family {
    fn name(&self) -> &str {
        if self.prefix.is_empty() {
            "(root)"
        } else {
            &self.prefix
        }
    }

    /// `` `blocks.0`…`blocks.5` `` or `` `_l0`…`_l2` ``.
    fn range(&self, indices: &BTreeSet<usize>) -> String {
        let show = |i: &usize| match (self.style, self.prefix.is_empty()) {
            (Style::Suffix, _) => format!("`_l{i}`"),
            (Style::Segment, true) => format!("`{i}`"),
            (Style::Segment, false) => format!("`{}.{i}`", self.prefix),
        };
        match (indices.first(), indices.last()) {
            (Some(a), Some(b)) if a != b => format!("{}…{}", show(a), show(b)),
            (Some(a), _) => show(a),
            _ => String::new(),
        }
    }
}

/// One place a key repeats a layer: its family, its index there, and the key with that index
/// blanked out (the same for every layer of the family).
struct Slot {
    family: Family,
    index: usize,
    skeleton: String,
}

/// Every index a key carries, outermost first.
fn slots(key: &str) -> Vec<Slot> {
    let segments: Vec<&str> = key.split('.').collect();
    let mut out = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if let Some(index) = number(segment) {
            let mut blank = segments.clone();
            blank[i] = "{}";
            out.push(Slot {
                family: Family {
                    prefix: segments[..i].join("."),
                    style: Style::Segment,
                },
                index,
                skeleton: blank.join("."),
            });
        }
    }
    let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
    if let Some((at, digits)) = suffix_index(last)
        && let Some(index) = number(digits)
    {
        let blanked = format!("{}{{}}{}", &last[..at], &last[at + digits.len()..]);
        out.push(Slot {
            family: Family {
                prefix: parent.to_string(),
                style: Style::Suffix,
            },
            index,
            skeleton: if parent.is_empty() {
                blanked
            } else {
                format!("{parent}.{blanked}")
            },
        });
    }
    out
}

/// A layer index: digits only, short enough to be one.
fn number(s: &str) -> Option<usize> {
    if s.is_empty() || s.len() > 6 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `weight_ih_l2_reverse` → the offset and digits of `2`: PyTorch's `_l{k}`, ending the name
/// or followed by `_`.
fn suffix_index(name: &str) -> Option<(usize, &str)> {
    let mut from = 0;
    while let Some(found) = name[from..].find("_l") {
        let at = from + found + 2;
        let digits = name[at..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(&name[at..], |end| &name[at..at + end]);
        let rest = &name[at + digits.len()..];
        if !digits.is_empty() && (rest.is_empty() || rest.starts_with('_')) {
            return Some((at, digits));
        }
        from = at;
    }
    None
}

/// Indices per family over `keys`.
fn indices<'k>(keys: impl Iterator<Item = &'k str>) -> BTreeMap<Family, BTreeSet<usize>> {
    let mut out: BTreeMap<Family, BTreeSet<usize>> = BTreeMap::new();
    for key in keys {
        for slot in slots(key) {
            out.entry(slot.family).or_default().insert(slot.index);
        }
    }
    out
}

/// Per family and index, the keys of that layer with the index blanked out.
type Layouts = HashMap<(Family, usize), BTreeSet<String>>;

fn layouts<'k>(keys: impl Iterator<Item = &'k str>) -> Layouts {
    let mut out: Layouts = HashMap::new();
    for key in keys {
        for slot in slots(key) {
            out.entry((slot.family, slot.index))
                .or_default()
                .insert(slot.skeleton);
        }
    }
    out
}

/// Families whose layer count differs between checkpoint and model, one line each: unused
/// checkpoint keys that repeat loaded keys at indices the model lacks, and missing model keys
/// that repeat loaded keys at indices the checkpoint lacks. Keys the `allow_*` patterns cover
/// do not count.
pub(super) fn layer_counts(
    report: &LoadReport,
    allow_missing: &dyn Fn(&str) -> bool,
    allow_unexpected: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    if report.loaded().is_empty() {
        return Vec::new();
    }
    let checkpoint_keys: Vec<&str> = report
        .loaded()
        .iter()
        .chain(report.mismatched().iter().map(|m| &m.key))
        .chain(report.unexpected())
        .map(String::as_str)
        .collect();
    let model = indices(report.model_keys());
    let checkpoint = indices(checkpoint_keys.iter().copied());
    let model_layers = layouts(report.model_keys());
    let checkpoint_layers = layouts(checkpoint_keys.iter().copied());
    // Keys at an index one side lacks, where that side's layer at the index holds the same
    // tensors (by name) as one of its layers at an index both sides have: a layer repeated,
    // not another module numbered in a list (`downsample.0` a conv, `downsample.1` a norm).
    let beyond = |keys: &[String], other: &BTreeMap<Family, BTreeSet<usize>>, own: &Layouts| {
        let mut out: BTreeMap<Family, Vec<String>> = BTreeMap::new();
        for key in keys {
            let slot = slots(key).into_iter().find(|s| {
                let Some(shared) = other.get(&s.family) else {
                    return false;
                };
                let layout = own.get(&(s.family.clone(), s.index));
                !shared.contains(&s.index)
                    && shared
                        .iter()
                        .any(|j| own.get(&(s.family.clone(), *j)) == layout)
            });
            if let Some(slot) = slot {
                out.entry(slot.family).or_default().push(key.clone());
            }
        }
        out
    };
    let mut out = Vec::new();
    let sides = [
        (
            beyond(report.unexpected(), &model, &checkpoint_layers),
            allow_unexpected,
            "allow_unexpected",
            "unused",
        ),
        (
            beyond(report.missing(), &checkpoint, &model_layers),
            allow_missing,
            "allow_missing",
            "missing",
        ),
    ];
    for (families, allowed, escape, what) in sides {
        for (family, keys) in families {
            if keys.iter().all(|k| allowed(k)) {
                continue;
            }
            let (Some(in_checkpoint), Some(in_model)) =
                (checkpoint.get(&family), model.get(&family))
            else {
                continue;
            };
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let mut folded = fold_keys(&keys);
            let more = folded.len().saturating_sub(3);
            folded.truncate(3);
            let more = match more {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            // A recurrent layer's `_l{k}` layers are a `Vec` of single layers in burn.
            let build = match family.style {
                Style::Suffix => format!(
                    "build {n} (a `Vec` of {n} layers, as PyTorch's `num_layers={n}`)",
                    n = in_checkpoint.len()
                ),
                Style::Segment => format!("build {}", in_checkpoint.len()),
            };
            out.push(format!(
                "checkpoint has {} layers of `{}` ({}), the model {} ({}): {build}, or allow with `{escape}` ({what}: {}{more})",
                in_checkpoint.len(),
                family.name(),
                family.range(in_checkpoint),
                in_model.len(),
                family.range(in_model),
                folded.join(", "),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_numeric_segments_and_recurrent_suffixes() {
        let found: Vec<(String, usize, String)> =
            slots("layers.1.blocks.2.rnn.weight_hh_l3_reverse")
                .into_iter()
                .map(|s| (s.family.prefix, s.index, s.skeleton))
                .collect();
        assert_eq!(
            found,
            [
                (
                    "layers".into(),
                    1,
                    "layers.{}.blocks.2.rnn.weight_hh_l3_reverse".into()
                ),
                (
                    "layers.1.blocks".into(),
                    2,
                    "layers.1.blocks.{}.rnn.weight_hh_l3_reverse".into()
                ),
                (
                    "layers.1.blocks.2.rnn".into(),
                    3,
                    "layers.1.blocks.2.rnn.weight_hh_l{}_reverse".into()
                ),
            ]
        );
        // Not an index: a name that merely contains `_l` and digits.
        assert!(slots("model.level_l2norm").is_empty());
        assert!(slots("fc.weight").is_empty());
        assert_eq!(suffix_index("bias_l10"), Some((6, "10")));
    }
}
