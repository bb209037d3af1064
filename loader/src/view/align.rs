//! Prefix alignment: the rewrite of one leading path of the checkpoint's keys into another
//! (strip `model.`, add `backbone.`, replace `encoder.` by `backbone.`) that makes the most
//! keys agree with the model's in name and shape.

use std::collections::HashMap;

/// The most leading segments a rewrite strips or adds on either side.
const MAX_DEPTH: usize = 3;
/// How many of the most voted candidates are scored exactly.
const CANDIDATES: usize = 8;
/// The most model keys a suffix may end for it to vote (see `best_rewrite`).
const AMBIGUOUS: usize = 8;

/// A leading-path rewrite and how many keys agree with and without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rewrite {
    /// The checkpoint's leading path (no trailing dot; empty: add `to` in front of every key).
    pub from: String,
    /// The model's (empty: strip `from`).
    pub to: String,
    /// Model tensors whose key and shape a view key matches after the rewrite.
    pub agree: usize,
    /// ... and before it.
    pub before: usize,
    /// Model tensors in all.
    pub total: usize,
}

impl Rewrite {
    /// `key` rewritten, or `None` when it does not start with `from`.
    pub fn apply(&self, key: &str) -> Option<String> {
        if self.from.is_empty() {
            return Some(format!("{}.{key}", self.to));
        }
        let rest = key.strip_prefix(self.from.as_str())?.strip_prefix('.')?;
        Some(if self.to.is_empty() {
            rest.to_string()
        } else {
            format!("{}.{rest}", self.to)
        })
    }
}

/// The best rewrite of `view` keys towards `model` keys (both with shapes), if one makes more
/// keys agree than none does.
pub(crate) fn best_rewrite(
    view: &[(&str, &[usize])],
    model: &[(&str, Vec<usize>)],
) -> Option<Rewrite> {
    let wanted: HashMap<&str, &[usize]> = model.iter().map(|(k, s)| (*k, s.as_slice())).collect();
    let agree_with = |rewrite: Option<&Rewrite>| {
        let mut seen = std::collections::HashSet::new();
        view.iter()
            .filter(|(key, shape)| {
                let key = match rewrite {
                    Some(r) => r.apply(key).unwrap_or_else(|| key.to_string()),
                    None => key.to_string(),
                };
                wanted.get(key.as_str()) == Some(shape) && seen.insert(key)
            })
            .count()
    };
    let before = agree_with(None);
    if before == model.len() {
        return None;
    }
    // Model keys by suffix, for each split after at most MAX_DEPTH leading segments.
    let mut by_suffix: HashMap<String, Vec<(String, &[usize])>> = HashMap::new();
    for (key, shape) in model {
        for (prefix, suffix) in splits(key) {
            by_suffix
                .entry(suffix)
                .or_default()
                .push((prefix, shape.as_slice()));
        }
    }
    // A suffix that many model keys share (`attn.qkv.weight` of every block) pairs every
    // view key that ends so with each of them: votes for wrong rewrites only, and as many as
    // the square of the blocks (10^10 for 100,000). The right rewrite always has a suffix few
    // keys share (the whole key, after the rewritten part), so such suffixes do not vote.
    by_suffix.retain(|_, keys| keys.len() <= AMBIGUOUS);
    let view_splits: Vec<(Vec<Split>, &[usize])> = view
        .iter()
        .map(|(key, shape)| (splits(key), *shape))
        .collect();
    let mut votes: HashMap<(&str, &str), usize> = HashMap::new();
    for (splits, shape) in &view_splits {
        for (from, suffix) in splits {
            for (to, model_shape) in by_suffix.get(suffix).into_iter().flatten() {
                if from != to && model_shape == shape {
                    *votes.entry((from.as_str(), to.as_str())).or_default() += 1;
                }
            }
        }
    }
    let mut ranked: Vec<_> = votes.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(CANDIDATES)
        .map(|((from, to), _)| {
            let mut r = Rewrite {
                from: from.to_string(),
                to: to.to_string(),
                agree: 0,
                before,
                total: model.len(),
            };
            r.agree = agree_with(Some(&r));
            r
        })
        .filter(|r| r.agree > before)
        .max_by(|a, b| {
            a.agree
                .cmp(&b.agree)
                // Fewer segments changed wins a tie.
                .then_with(|| depth(b).cmp(&depth(a)))
        })
}

fn depth(r: &Rewrite) -> usize {
    r.from.split('.').count() + r.to.split('.').count()
}

/// A key cut in two: `(leading path, rest)`.
type Split = (String, String);

/// `(leading path, rest)` for every split after 0..=MAX_DEPTH segments whose rest is the
/// whole key or at least two segments (a lone leaf like `weight` says nothing).
fn splits(key: &str) -> Vec<Split> {
    let segs: Vec<&str> = key.split('.').collect();
    (0..=MAX_DEPTH.min(segs.len() - 1))
        .filter(|&i| i == 0 || segs.len() - i >= 2)
        .map(|i| (segs[..i].join("."), segs[i..].join(".")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(keys: &[&str]) -> Vec<(&'static str, Vec<usize>)> {
        keys.iter()
            .map(|k| (Box::leak(k.to_string().into_boxed_str()) as &str, vec![2]))
            .collect()
    }

    #[test]
    fn a_replaced_prefix_is_found_and_scored() {
        let view_keys = [
            "encoder.l1.conv.weight",
            "encoder.l1.bn.weight",
            "fc.weight",
        ];
        let view: Vec<(&str, &[usize])> = view_keys.iter().map(|k| (*k, &[2][..])).collect();
        let model = model(&[
            "backbone.l1.conv.weight",
            "backbone.l1.bn.weight",
            "fc.weight",
        ]);
        let r = best_rewrite(&view, &model).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str()), ("encoder", "backbone"));
        assert_eq!((r.agree, r.before, r.total), (3, 1, 3));
    }

    #[test]
    fn added_and_stripped_prefixes_too() {
        let view: Vec<(&str, &[usize])> = vec![("a.w", &[2]), ("b.w", &[2])];
        let r = best_rewrite(&view, &model(&["net.a.w", "net.b.w"])).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str(), r.agree), ("", "net", 2));
        let view: Vec<(&str, &[usize])> = vec![("m.e.a.w", &[2]), ("m.e.b.w", &[2])];
        let r = best_rewrite(&view, &model(&["a.w", "b.w"])).unwrap();
        assert_eq!((r.from.as_str(), r.to.as_str(), r.agree), ("m.e", "", 2));
    }

    #[test]
    fn nothing_when_the_keys_already_agree() {
        let view: Vec<(&str, &[usize])> = vec![("a.w", &[2])];
        assert_eq!(best_rewrite(&view, &model(&["a.w"])), None);
    }
}
