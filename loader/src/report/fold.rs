//! Fold repeated keys for humans: `layer1.0.conv1.weight`, `layer1.1.conv1.weight`,
//! `layer1.2.conv1.weight` → `layer1.{0..2}.conv1.weight`; `fc.weight`, `fc.bias` →
//! `fc.{weight,bias}`. Order of first appearance is kept.

use std::collections::HashMap;

/// Fold `keys` into as few patterns as the numeric segments and shared parents allow.
pub fn fold_keys<S: AsRef<str>>(keys: &[S]) -> Vec<String> {
    let mut items: Vec<Vec<String>> = keys
        .iter()
        .map(|k| k.as_ref().split('.').map(str::to_string).collect())
        .collect();
    let depth = items.iter().map(Vec::len).max().unwrap_or(0);
    // Fold numeric segments, innermost position first so `layer1.{0..2}.conv1` folds over
    // blocks before anything folds over layers.
    for pos in (0..depth).rev() {
        items = fold_numeric_at(items, pos);
    }
    fold_leaves(items).into_iter().map(printable).collect()
}

/// A key as it can be printed: control characters (a NUL, an escape sequence, a newline that
/// would forge a line of output) shown escaped (`\u{0}`, `\n`).
pub fn printable(key: String) -> String {
    if !key.chars().any(char::is_control) {
        return key;
    }
    key.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn fold_numeric_at(items: Vec<Vec<String>>, pos: usize) -> Vec<Vec<String>> {
    let mut order: Vec<Vec<String>> = Vec::new();
    let mut groups: HashMap<Vec<String>, Vec<u64>> = HashMap::new();
    for segs in items {
        let number = segs.get(pos).and_then(|s| parse_index(s));
        match number {
            Some(n) => {
                let mut template = segs.clone();
                template[pos] = "\u{0}".into();
                let entry = groups.entry(template.clone()).or_default();
                if entry.is_empty() {
                    order.push(template);
                }
                entry.push(n);
            }
            None => order.push(segs),
        }
    }
    order
        .into_iter()
        .map(|mut segs| {
            if segs.get(pos).map(String::as_str) == Some("\u{0}") {
                let numbers = &groups[&segs];
                segs[pos] = if numbers.len() == 1 {
                    numbers[0].to_string()
                } else {
                    range_text(numbers)
                };
            }
            segs
        })
        .collect()
}

fn parse_index(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn range_text(numbers: &[u64]) -> String {
    let mut sorted = numbers.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let contiguous = sorted.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && sorted.len() > 2 {
        format!("{{{}..{}}}", sorted[0], sorted[sorted.len() - 1])
    } else {
        let list: Vec<String> = sorted.iter().map(u64::to_string).collect();
        format!("{{{}}}", list.join(","))
    }
}

/// `a.b.weight`, `a.b.bias` → `a.b.{weight,bias}`.
fn fold_leaves(items: Vec<Vec<String>>) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut leaves: HashMap<String, Vec<String>> = HashMap::new();
    let mut plain: Vec<Option<String>> = Vec::new();
    for segs in items {
        if segs.len() < 2 {
            plain.push(Some(segs.join(".")));
            order.push(String::new());
            continue;
        }
        let parent = segs[..segs.len() - 1].join(".");
        let leaf = segs[segs.len() - 1].clone();
        let entry = leaves.entry(parent.clone()).or_default();
        if entry.is_empty() {
            order.push(parent);
            plain.push(None);
        }
        entry.push(leaf);
    }
    order
        .into_iter()
        .zip(plain)
        .map(|(parent, plain)| match plain {
            Some(p) => p,
            None => {
                let leaves = &leaves[&parent];
                if leaves.len() == 1 {
                    format!("{parent}.{}", leaves[0])
                } else {
                    format!("{parent}.{{{}}}", leaves.join(","))
                }
            }
        })
        .collect()
}

/// `items` grouped by `key`, groups in order of first appearance, items in order (one hash
/// lookup each: lists of 100k keys stay linear).
pub(super) fn group_by<T, K: std::hash::Hash + Eq + Clone>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    let mut slot: HashMap<K, usize> = HashMap::new();
    for item in items {
        let k = key(&item);
        let i = *slot.entry(k.clone()).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(item);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::fold_keys;

    #[test]
    fn folds_repeated_blocks_and_siblings() {
        let keys = [
            "layer1.0.conv1.weight",
            "layer1.1.conv1.weight",
            "layer1.2.conv1.weight",
            "fc.weight",
            "fc.bias",
            "conv1.weight",
        ];
        assert_eq!(
            fold_keys(&keys),
            [
                "layer1.{0..2}.conv1.weight",
                "fc.{weight,bias}",
                "conv1.weight"
            ]
        );
    }

    #[test]
    fn non_contiguous_indices_are_listed() {
        let keys = [
            "features.0.weight",
            "features.3.weight",
            "features.7.weight",
        ];
        assert_eq!(fold_keys(&keys), ["features.{0,3,7}.weight"]);
    }

    #[test]
    fn nested_indices_fold_level_by_level() {
        let mut keys = Vec::new();
        for layer in 0..2 {
            for block in 0..3 {
                keys.push(format!("blocks.{layer}.{block}.bn.running_mean"));
            }
        }
        assert_eq!(fold_keys(&keys), ["blocks.{0,1}.{0..2}.bn.running_mean"]);
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            fold_keys(&["a\0b.weight", "c\x1b[2J.bias", "fake\nline"]),
            ["a\\u{0}b.weight", "c\\u{1b}[2J.bias", "fake\\nline"]
        );
    }

    #[test]
    fn single_keys_stay_as_they_are() {
        assert_eq!(fold_keys(&["a.0.b"]), ["a.0.b"]);
        assert_eq!(fold_keys(&["top"]), ["top"]);
        assert!(fold_keys::<&str>(&[]).is_empty());
    }
}
