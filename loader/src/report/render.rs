//! The one text rendering of a report: a headline, a summary and sections, each at a level.
//! `Display` writes them indented; [`LoadReport::log`] emits each as a `tracing` event at its
//! level, so the text and the log say the same things in the same words.

use std::fmt;

use super::fold::{self, group_by};
use super::{Cast, LoadReport, Mismatch, Split, fold_keys};

/// How much a section matters: a log event's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
}

/// One part of the report: a line, and the items below it (none for a one-line section).
#[derive(Debug)]
struct Section {
    level: Level,
    text: String,
    items: Vec<String>,
}

fn line(level: Level, text: String) -> Section {
    Section {
        level,
        text,
        items: Vec::new(),
    }
}

impl LoadReport {
    /// The first line: `Loaded pretrained model [ResNet] from r50.pth (PyTorch zip)`.
    fn headline(&self) -> String {
        let mut shards = match self.shards {
            0 => String::new(),
            n => format!(", {n} shards"),
        };
        if self.bytes_mapped > 0 {
            shards.push_str(&format!(", {} bytes mapped", self.bytes_mapped));
        }
        format!(
            "{} pretrained model [{}] from {} ({}{shards})",
            if self.dry_run { "Plan for" } else { "Loaded" },
            self.model,
            self.source,
            self.format
        )
    }

    /// What the view did, a line a step (before the summary in the text).
    fn view_lines(&self) -> Vec<Section> {
        self.view
            .iter()
            .map(|step| line(Level::Info, format!("view: {step}")))
            .collect()
    }

    /// Every section after the summary, in order.
    fn sections(&self) -> Vec<Section> {
        use Level::{Info, Warn};
        let mut out: Vec<Section> = Vec::new();
        if !self.adapted.is_empty() {
            out.push(Section {
                level: Info,
                text: "adapted by mismatch rules:".into(),
                items: self
                    .adapted
                    .iter()
                    .map(|a| {
                        let by = match a.rule {
                            crate::policy::PolicySource::ModelDefault => " (the model's default)",
                            _ => "",
                        };
                        format!("{}: {}{by}", fold::printable(a.key.clone()), a.how)
                    })
                    .collect(),
            });
        }
        for (pair, keys) in group_casts(&self.cast) {
            out.push(line(
                Info,
                format!("cast {pair}: {}", fold_keys(&keys).join(", ")),
            ));
        }
        if !self.split.is_empty() {
            out.push(Section {
                level: Info,
                text: "split packed tensors:".into(),
                items: group_splits(&self.split)
                    .into_iter()
                    .map(|((shape, parts), keys)| {
                        format!(
                            "{} {shape:?} → {} parts ({})",
                            fold_keys(&keys).join(", "),
                            parts.len(),
                            parts.join(", ")
                        )
                    })
                    .collect(),
            });
        }
        if !self.mismatched.is_empty() {
            out.push(Section {
                level: Warn,
                text: "shape mismatch, model keeps its values:".into(),
                items: self.mismatched.iter().map(mismatch_line).collect(),
            });
        }
        if !self.missing.is_empty() {
            let keys = summarize(&self.missing);
            out.push(line(Warn, format!("missing in checkpoint: {keys}")));
        }
        if !self.unexpected.is_empty() {
            let keys = summarize(&self.unexpected);
            out.push(line(Warn, format!("unexpected in checkpoint: {keys}")));
        }
        for (reason, ignored) in group_by(&self.ignored, |i| i.reason.as_str()) {
            let keys: Vec<&str> = ignored.iter().map(|i| i.key.as_str()).collect();
            // What lay beside the model (optimizer state, a scheduler, step counters) is one
            // entry per container, not its inner keys.
            let listed = match reason.starts_with("outside the ") {
                true => per_root(&keys),
                false => summarize(&keys),
            };
            out.push(line(Info, format!("ignored ({reason}): {listed}")));
        }
        out.extend(
            self.failures
                .iter()
                .map(|f| line(Warn, format!("failed: {f}"))),
        );
        if !self.frozen.is_empty() {
            out.push(line(
                Info,
                format!(
                    "frozen {} tensors ({})",
                    self.frozen.len(),
                    group_by(self.frozen.iter().map(String::as_str), |key| {
                        key.split('.').next().unwrap_or_default()
                    })
                    .into_iter()
                    .map(|(root, group)| format!("{root}: {}", group.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
                ),
            ));
        }
        if let Some(q) = &self.quantized {
            out.push(line(
                Info,
                format!(
                    "quantized while loading ({}): {} tensors, {} → {} bytes: {}",
                    q.scheme,
                    q.keys.len(),
                    q.float_bytes,
                    q.quantized_bytes,
                    summarize(&q.keys)
                ),
            ));
            if !q.indivisible.is_empty() {
                out.push(line(
                    Info,
                    format!(
                        "left in float (the block does not divide the last axis): {}",
                        summarize(&q.indivisible)
                    ),
                ));
            }
        }
        if let Some(adapter) = &self.adapter {
            let verb = if adapter.merged { "merged" } else { "attached" };
            let mut items: Vec<String> = adapter
                .layers
                .iter()
                .map(|l| {
                    let parts = match l.parts.as_slice() {
                        [_] => String::new(),
                        parts => format!(" → {}", parts.join(", ")),
                    };
                    format!("{} (r {}, scale {}){parts}", l.key, l.rank, l.scale)
                })
                .collect();
            if !adapter.replaced.is_empty() {
                items.push(format!(
                    "replaced (modules_to_save): {}",
                    summarize(&adapter.replaced)
                ));
            }
            out.push(Section {
                level: Info,
                text: format!(
                    "LoRA adapter {} {verb} to {} layers:",
                    adapter.source,
                    adapter.layers.len()
                ),
                items,
            });
        }
        out.extend(self.hints.iter().map(|h| line(Info, format!("hint: {h}"))));
        out
    }

    /// What a failed expectation's error carries besides its own lines, so that the error
    /// alone names the keys: the shape mismatches (the first few), the missing and the unused
    /// keys folded, and the hints.
    pub(crate) fn unmet_details(&self) -> Vec<String> {
        const SHOWN: usize = 5;
        let mut out = Vec::new();
        if !self.mismatched.is_empty() {
            let mut lines: Vec<String> = self
                .mismatched
                .iter()
                .take(SHOWN)
                .map(mismatch_line)
                .collect();
            if self.mismatched.len() > SHOWN {
                lines.push(format!("{} more", self.mismatched.len() - SHOWN));
            }
            out.push(format!("shape mismatch: {}", lines.join("; ")));
        }
        if !self.missing.is_empty() {
            out.push(format!(
                "missing in checkpoint: {}",
                summarize(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            out.push(format!(
                "unexpected in checkpoint: {}",
                summarize(&self.unexpected)
            ));
        }
        out.extend(self.hints.iter().take(SHOWN).map(|h| format!("hint: {h}")));
        out
    }

    /// Emit the report through `tracing`, in the words of its text form: the headline and
    /// summary (a warning when less than every tensor loaded), then one event per section at
    /// its level (warnings for mismatched, missing and unexpected tensors and for failures).
    pub fn log(&self) {
        if self.loaded.len() < self.total() {
            tracing::warn!("{}: {}", self.headline(), self.summary());
        } else {
            tracing::info!("{}: {}", self.headline(), self.summary());
        }
        for section in self.view_lines().into_iter().chain(self.sections()) {
            let mut text = section.text;
            for item in &section.items {
                text.push_str("\n  ");
                text.push_str(item);
            }
            match section.level {
                Level::Info => tracing::info!("{text}"),
                Level::Warn => tracing::warn!("{text}"),
            }
        }
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.headline())?;
        for step in self.view_lines() {
            writeln!(f, "  {}", step.text)?;
        }
        let per_subtree: Vec<String> = self
            .subtrees
            .iter()
            .map(|c| format!("{} {}/{}", c.subtree, c.loaded, c.total))
            .collect();
        writeln!(f, "  {}: {}", self.summary(), per_subtree.join(", "))?;
        for section in self.sections() {
            writeln!(f, "  {}", section.text)?;
            for item in &section.items {
                writeln!(f, "    {item}")?;
            }
        }
        Ok(())
    }
}

/// A stored shape and the parts below their common parent.
type SplitKind = (Vec<usize>, Vec<String>);

/// Splits with the same stored shape and the same parts below their common parent (`query.weight,
/// key.weight, value.weight` of every block's `qkv.weight`), with their keys, in order of first
/// appearance: one line per group, however deep the model.
fn group_splits(splits: &[Split]) -> Vec<(SplitKind, Vec<String>)> {
    let mut groups: Vec<(SplitKind, Vec<String>)> = Vec::new();
    for s in splits {
        let segments: Vec<Vec<&str>> = s.parts.iter().map(|p| p.split('.').collect()).collect();
        let common = match segments.split_first() {
            Some((first, rest)) if !rest.is_empty() => rest.iter().fold(first.len(), |n, p| {
                n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count())
            }),
            _ => 0,
        };
        let parts: Vec<String> = segments
            .iter()
            .map(|p| fold::printable(p[common.min(p.len())..].join(".")))
            .collect();
        let group = (s.checkpoint_shape.clone(), parts);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, keys)) => keys.push(s.key.clone()),
            None => groups.push((group, vec![s.key.clone()])),
        }
    }
    groups
}

/// `fc.weight: model [10, 512] vs. checkpoint [1000, 512]`, and the rule that kept it.
fn mismatch_line(m: &Mismatch) -> String {
    let rule = match &m.rule {
        Some(rule) => format!(" ({rule})"),
        None => String::new(),
    };
    format!(
        "{}: model {:?} vs. checkpoint {:?}{rule}",
        fold::printable(m.key.clone()),
        m.model_shape,
        m.checkpoint_shape
    )
}

fn group_casts(casts: &[Cast]) -> Vec<(String, Vec<&str>)> {
    group_by(casts, |c| (c.from, c.to))
        .into_iter()
        .map(|((from, to), list)| {
            (
                format!("{from} → {to}"),
                list.iter().map(|c| c.key.as_str()).collect(),
            )
        })
        .collect()
}

/// Folded keys, or for long lists a count per top-level name (the JSON keeps every key).
/// `optimizer_state.* (40 tensors), epoch`: one entry per top-level name.
fn per_root(keys: &[&str]) -> String {
    group_by(keys.iter().copied(), |key| {
        key.split('.').next().unwrap_or_default()
    })
    .into_iter()
    .map(|(root, group)| match group.as_slice() {
        [only] if *only == root => root.to_string(),
        _ => format!("{root}.* ({} tensors)", group.len()),
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn summarize<S: AsRef<str>>(keys: &[S]) -> String {
    const MAX_PATTERNS: usize = 8;
    let folded = fold_keys(keys);
    if folded.len() <= MAX_PATTERNS {
        return folded.join(", ");
    }
    // Per top-level name; a group of up to three keys is named, not counted.
    let roots = group_by(keys.iter().map(AsRef::as_ref), |key| {
        key.split('.').next().unwrap_or_default()
    });
    let parts: Vec<String> = roots
        .iter()
        .map(|(r, group)| match group.len() {
            1..=3 => fold_keys(group).join(", "),
            n => format!("{r}.* ({n})"),
        })
        .collect();
    format!("{} keys: {}", keys.len(), parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_groups_are_named_not_counted() {
        let mut keys: Vec<String> = (0..12)
            .map(|i| format!("blocks.{i}.attn.qkv.weight"))
            .collect();
        keys.extend((0..12).map(|i| format!("blocks.{i}.mlp.fc{i}x.bias")));
        keys.push("embeddings.position_ids".into());
        let text = summarize(&keys);
        assert!(text.contains("embeddings.position_ids"), "{text}");
        assert!(!text.contains("embeddings.* (1)"), "{text}");
        assert!(text.contains("blocks.* (24)"), "{text}");
    }
}
