//! Converters as data: tensor rewrites of the checkpoint's keys that a remap cannot express
//! (several keys into one, one into several, a transposed or reshaped layout, a weight norm
//! under other names), applied in the view before planning and undone by export.
//!
//! Keys are *patterns*: `*` stands for any run of characters and every pattern of one
//! converter has the same number of them, matched in order, so `*.gate_proj.weight` +
//! `*.up_proj.weight` → `*.gate_up.weight` works for every layer and reads the same both
//! ways. A pattern without `*` is one key.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io;

use burn::tensor::TensorData;
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::weight_norm;
use super::{View, ViewEntry, ViewStep};
use crate::error::{Error, Result};
use crate::format::{DType, TensorEntry};
use crate::layout::{concat, split};

/// One tensor rewrite, in code or in a config's `convert` list (externally tagged:
/// `{"merge": {"from": ["*.gate_proj.weight", "*.up_proj.weight"], "into": "*.gate_up.weight",
/// "axis": 0}}`). Keys are the view's (after unwrapping, `sub_level` and remaps: the names the
/// report shows), axes are the checkpoint's (PyTorch's layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Converter {
    /// Concatenate `from` (equal in every axis but `axis`) along `axis` into `into`. Undone
    /// by splitting at the stored sizes (equal parts without a checkpoint to follow).
    Merge {
        /// The parts, in order.
        from: Vec<String>,
        /// The merged key.
        into: String,
        /// The axis to concatenate along.
        #[serde(default)]
        axis: usize,
    },
    /// Cut `from` along `axis` into `into`, of `sizes` (equal parts when empty). Undone by
    /// concatenating.
    Split {
        /// The key to cut.
        from: String,
        /// The parts, in order.
        into: Vec<String>,
        /// The axis to cut along.
        #[serde(default)]
        axis: usize,
        /// Each part's length along `axis`; empty for equal parts.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sizes: Vec<usize>,
    },
    /// Permute `key`'s axes (`axes[i]` is the stored axis that becomes axis `i`; empty:
    /// reversed, a 2-D transpose). Undone by the inverse permutation.
    Transpose {
        /// The key.
        key: String,
        /// The permutation; empty for all axes reversed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        axes: Vec<usize>,
    },
    /// Give `key` another shape of as many elements (one axis may be `-1`: what is left).
    /// Undone when export follows a checkpoint (the stored shape); otherwise kept.
    Reshape {
        /// The key.
        key: String,
        /// The new shape.
        shape: Vec<i64>,
    },
    /// Fold a weight norm stored under other names or for another axis than PyTorch's
    /// default: `into = g · v / ‖v‖`, the norm over every axis but the one `g` keeps (read off
    /// `g`'s shape). Undone as `g = ‖w‖`, `v = w`.
    FoldWeightNorm {
        /// The magnitude.
        g: String,
        /// The direction.
        v: String,
        /// The folded weight.
        into: String,
    },
}

impl fmt::Display for Converter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |keys: &[String]| {
            keys.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        match self {
            Converter::Merge { from, into, axis } => {
                write!(f, "merge {} → `{into}` (axis {axis})", list(from))
            }
            Converter::Split {
                from,
                into,
                axis,
                sizes,
            } => {
                write!(f, "split `{from}` → {} (axis {axis}", list(into))?;
                if !sizes.is_empty() {
                    write!(f, ", sizes {sizes:?}")?;
                }
                f.write_str(")")
            }
            Converter::Transpose { key, axes } if axes.is_empty() => write!(f, "transpose `{key}`"),
            Converter::Transpose { key, axes } => write!(f, "transpose `{key}` (axes {axes:?})"),
            Converter::Reshape { key, shape } => write!(f, "reshape `{key}` → {shape:?}"),
            Converter::FoldWeightNorm { g, v, into } => {
                write!(f, "fold weight norm `{g}` + `{v}` → `{into}`")
            }
        }
    }
}

/// A key pattern: its text, and a regex matching whole keys with one group per `*`.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    re: Regex,
}

impl Pattern {
    fn new(text: &str) -> std::result::Result<Self, regex::Error> {
        let body: Vec<String> = text.split('*').map(regex::escape).collect();
        Ok(Self {
            text: text.to_string(),
            re: Regex::new(&format!("^{}$", body.join("(.+)")))?,
        })
    }

    fn stars(&self) -> usize {
        self.text.matches('*').count()
    }

    /// What each `*` stood for in `key`, if the pattern matches it.
    fn matches<'k>(&self, key: &'k str) -> Option<Vec<&'k str>> {
        let caps = self.re.captures(key)?;
        Some(
            caps.iter()
                .skip(1)
                .map(|m| m.map_or("", |m| m.as_str()))
                .collect(),
        )
    }

    /// The key this pattern names where each `*` stands for `stars[i]`.
    fn expand(&self, stars: &[&str]) -> String {
        let mut out = String::new();
        for (i, part) in self.text.split('*').enumerate() {
            if i > 0 {
                out.push_str(stars[i - 1]);
            }
            out.push_str(part);
        }
        out
    }
}

/// A converter checked once per load: its patterns compiled, their `*` counts equal.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub converter: Converter,
    /// The patterns the load matches first (`from`, `key`, `g`) and the rest, in the
    /// converter's order.
    stored: Vec<Pattern>,
    made: Vec<Pattern>,
}

impl Compiled {
    pub fn new(converter: &Converter) -> Result<Self> {
        let (stored, made): (Vec<&str>, Vec<&str>) = match converter {
            Converter::Merge { from, into, .. } => {
                (from.iter().map(String::as_str).collect(), vec![into])
            }
            Converter::Split { from, into, .. } => {
                (vec![from], into.iter().map(String::as_str).collect())
            }
            Converter::Transpose { key, .. } | Converter::Reshape { key, .. } => {
                (vec![key], vec![key])
            }
            Converter::FoldWeightNorm { g, v, into } => (vec![g, v], vec![into]),
        };
        let invalid = |detail: String| Error::InvalidConverter {
            converter: converter.to_string(),
            detail,
        };
        if stored.is_empty() || made.is_empty() {
            return Err(invalid("it names no key".into()));
        }
        let compile = |texts: Vec<&str>| {
            texts
                .into_iter()
                .map(Pattern::new)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| invalid(e.to_string()))
        };
        let (stored, made) = (compile(stored)?, compile(made)?);
        let stars = stored[0].stars();
        if let Some(p) = stored.iter().chain(&made).find(|p| p.stars() != stars) {
            return Err(invalid(format!(
                "`{}` has {} `*`, `{}` {stars}: every key of a converter has the same number",
                p.text,
                p.stars(),
                stored[0].text
            )));
        }
        if let Converter::Reshape { shape, .. } = converter
            && (shape.iter().filter(|&&d| d == -1).count() > 1 || shape.iter().any(|&d| d < -1))
        {
            return Err(invalid(format!(
                "shape {shape:?}: axes are lengths, and at most one is -1"
            )));
        }
        Ok(Self {
            converter: converter.clone(),
            stored,
            made,
        })
    }

    fn refuse(&self, detail: String) -> Error {
        Error::InvalidConverter {
            converter: self.converter.to_string(),
            detail,
        }
    }
}

/// A stored tensor as host data.
fn read(entry: &TensorEntry) -> io::Result<TensorData> {
    Ok(TensorData::from_bytes_vec(
        entry.read()?,
        entry.shape().to_vec(),
        entry.dtype().to_burn_dtype(),
    ))
}

/// `data`'s axes permuted: axis `i` of the result is axis `axes[i]` of `data`.
pub(crate) fn permute(data: &TensorData, axes: &[usize]) -> TensorData {
    let shape = data.shape().to_vec();
    let size = data.dtype().size();
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
    let out_strides: Vec<usize> = axes.iter().map(|&a| strides[a]).collect();
    let numel: usize = shape.iter().product();
    let src = data.as_bytes();
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0usize; out_shape.len()];
    for _ in 0..numel {
        let at: usize = index.iter().zip(&out_strides).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&src[at * size..(at + 1) * size]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < out_shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    TensorData::from_bytes_vec(out, out_shape, data.dtype())
}

/// The permutation a transpose of a `rank`-D tensor applies.
fn permutation(c: &Compiled, axes: &[usize], rank: usize, key: &str) -> Result<Vec<usize>> {
    if axes.is_empty() {
        return Ok((0..rank).rev().collect());
    }
    let mut seen = axes.to_vec();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(c.refuse(format!(
            "`{key}` has {rank} axes; {axes:?} is not a permutation of them"
        )));
    }
    Ok(axes.to_vec())
}

/// `shape` with its `-1` resolved for `numel` elements, or why it cannot hold them.
fn resolve_shape(shape: &[i64], numel: usize) -> std::result::Result<Vec<usize>, String> {
    let known: usize = shape
        .iter()
        .filter(|&&d| d >= 0)
        .map(|&d| d as usize)
        .product();
    let resolved: Vec<usize> = shape
        .iter()
        .map(|&d| match d {
            -1 if known > 0 => numel / known,
            -1 => 0,
            d => d as usize,
        })
        .collect();
    match resolved.iter().product::<usize>() == numel {
        true => Ok(resolved),
        false => Err(format!("{shape:?} cannot hold {numel} elements")),
    }
}

/// A view entry that computes its bytes from stored tensors.
fn derived(
    key: String,
    shape: Vec<usize>,
    dtype: DType,
    like: &ViewEntry,
    make: impl Fn() -> io::Result<TensorData> + Send + Sync + 'static,
) -> ViewEntry {
    let entry = TensorEntry::derived(key.clone(), shape, dtype, like.entry.file(), move || {
        Ok(make()?.as_bytes().to_vec())
    });
    ViewEntry {
        key,
        entry,
        before_rename: like.before_rename.clone(),
    }
}

impl View {
    /// Apply one converter to every key its first pattern matches; the keys made take the
    /// place of the first one used, so the state dict's order holds. A converter that
    /// matches nothing, or whose other keys are not there or do not fit, is refused with the
    /// keys named.
    pub(super) fn convert(&mut self, c: &Compiled) -> Result<()> {
        let index: HashMap<String, usize> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key.clone(), i))
            .collect();
        let mut made: HashMap<usize, Vec<ViewEntry>> = HashMap::new();
        let mut used: HashSet<usize> = HashSet::new();
        let mut keys = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let Some(stars) = c.stored[0].matches(&e.key) else {
                continue;
            };
            // Every stored key of this instance, the first one first.
            let mut sources = vec![i];
            for p in &c.stored[1..] {
                let key = p.expand(&stars);
                let at = *index.get(&key).ok_or_else(|| {
                    c.refuse(format!(
                        "`{key}` (with `{}`) is not in {}",
                        e.key,
                        e.entry.file().display()
                    ))
                })?;
                sources.push(at);
            }
            if let Some(&taken) = sources.iter().find(|s| used.contains(s)) {
                return Err(c.refuse(format!("`{}` would be used twice", self.entries[taken].key)));
            }
            let outputs: Vec<String> = c.made.iter().map(|p| p.expand(&stars)).collect();
            let parts: Vec<&ViewEntry> = sources.iter().map(|&s| &self.entries[s]).collect();
            let new = self.instance(c, &parts, outputs)?;
            keys.extend(new.iter().map(|e| e.key.clone()));
            used.extend(sources);
            made.insert(i, new);
        }
        if made.is_empty() {
            let shown: Vec<&str> = self
                .entries
                .iter()
                .take(5)
                .map(|e| e.key.as_str())
                .collect();
            return Err(c.refuse(format!(
                "`{}` matches no key (the view's keys begin {})",
                c.stored[0].text,
                shown.join(", ")
            )));
        }
        let entries = std::mem::take(&mut self.entries);
        for (i, e) in entries.into_iter().enumerate() {
            if let Some(new) = made.remove(&i) {
                self.entries.extend(new);
            } else if !used.contains(&i) {
                self.entries.push(e);
            }
        }
        self.steps.push(ViewStep::Converted {
            converter: c.converter.to_string(),
            keys,
        });
        Ok(())
    }

    /// The entries one match of `c` makes from `parts` (the stored keys, in pattern order).
    fn instance(
        &self,
        c: &Compiled,
        parts: &[&ViewEntry],
        outputs: Vec<String>,
    ) -> Result<Vec<ViewEntry>> {
        let first = parts[0];
        let shape = first.entry.shape().to_vec();
        let stored: Vec<TensorEntry> = parts.iter().map(|p| p.entry.clone()).collect();
        match &c.converter {
            Converter::Merge { axis, .. } => {
                let axis = *axis;
                for p in parts {
                    let s = p.entry.shape();
                    let fits = s.len() == shape.len()
                        && axis < s.len()
                        && (0..s.len()).all(|d| d == axis || s[d] == shape[d]);
                    if !fits {
                        return Err(c.refuse(format!(
                            "`{}` {:?} and `{}` {:?} do not concatenate along axis {axis}",
                            first.key, shape, p.key, s
                        )));
                    }
                    if p.entry.dtype() != first.entry.dtype() {
                        return Err(c.refuse(format!(
                            "`{}` is {:?}, `{}` {:?}: merged keys share a dtype",
                            first.key,
                            first.entry.dtype(),
                            p.key,
                            p.entry.dtype()
                        )));
                    }
                }
                let mut merged = shape.clone();
                merged[axis] = parts.iter().map(|p| p.entry.shape()[axis]).sum();
                let into = outputs[0].clone();
                Ok(vec![derived(
                    into,
                    merged,
                    first.entry.dtype(),
                    first,
                    move || {
                        let datas = stored.iter().map(read).collect::<io::Result<Vec<_>>>()?;
                        Ok(concat(&datas, axis))
                    },
                )])
            }
            Converter::Split { axis, sizes, .. } => {
                let axis = *axis;
                let n = outputs.len();
                let sizes = match sizes.is_empty() {
                    _ if axis >= shape.len() => {
                        return Err(
                            c.refuse(format!("`{}` {shape:?} has no axis {axis}", first.key))
                        );
                    }
                    true if shape[axis].is_multiple_of(n) => vec![shape[axis] / n; n],
                    true => {
                        return Err(c.refuse(format!(
                            "`{}` {shape:?}: {} along axis {axis} does not split into {n} equal parts (give sizes)",
                            first.key, shape[axis]
                        )));
                    }
                    false if sizes.len() == n && sizes.iter().sum::<usize>() == shape[axis] => {
                        sizes.clone()
                    }
                    false => {
                        return Err(c.refuse(format!(
                            "`{}` {shape:?}: sizes {sizes:?} for {n} parts do not sum to {} along axis {axis}",
                            first.key, shape[axis]
                        )));
                    }
                };
                Ok(outputs
                    .into_iter()
                    .enumerate()
                    .map(|(j, key)| {
                        let mut part = shape.clone();
                        part[axis] = sizes[j];
                        let (source, sizes) = (stored[0].clone(), sizes.clone());
                        derived(key, part, first.entry.dtype(), first, move || {
                            Ok(split(&read(&source)?, axis, &sizes).swap_remove(j))
                        })
                    })
                    .collect())
            }
            Converter::Transpose { axes, .. } => {
                let axes = permutation(c, axes, shape.len(), &first.key)?;
                let out: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
                let source = stored[0].clone();
                let key = outputs[0].clone();
                Ok(vec![derived(
                    key,
                    out,
                    first.entry.dtype(),
                    first,
                    move || Ok(permute(&read(&source)?, &axes)),
                )])
            }
            Converter::Reshape { shape: to, .. } => {
                let numel = shape.iter().product();
                let to = resolve_shape(to, numel)
                    .map_err(|why| c.refuse(format!("`{}` {shape:?}: {why}", first.key)))?;
                let (source, out) = (stored[0].clone(), to.clone());
                let key = outputs[0].clone();
                Ok(vec![derived(
                    key,
                    to,
                    first.entry.dtype(),
                    first,
                    move || {
                        let bytes = source.read()?;
                        Ok(TensorData::from_bytes_vec(
                            bytes,
                            out.clone(),
                            source.dtype().to_burn_dtype(),
                        ))
                    },
                )])
            }
            Converter::FoldWeightNorm { .. } => {
                let (g, v) = (parts[0], parts[1]);
                let dim = weight_norm::norm_dim(g.entry.shape(), v.entry.shape())
                    .map_err(|why| c.refuse(format!("`{}`, `{}`: {why}", g.key, v.key)))?;
                let into = outputs[0].clone();
                let entry = weight_norm::folded_entry(into.clone(), &g.entry, &v.entry, dim);
                Ok(vec![ViewEntry {
                    key: into,
                    entry,
                    before_rename: v.before_rename.clone(),
                }])
            }
        }
    }
}

/// The keys the model sees for a checkpoint holding `stored` (names only, converters in
/// order), to export in that checkpoint's forms.
pub(crate) fn converted_names(
    converters: &[Compiled],
    stored: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut keys = stored.clone();
    for c in converters {
        let mut next = keys.clone();
        for key in &keys {
            let Some(stars) = c.stored[0].matches(key) else {
                continue;
            };
            let sources: Vec<String> = c.stored.iter().map(|p| p.expand(&stars)).collect();
            if sources.iter().all(|s| keys.contains(s)) {
                for s in &sources {
                    next.remove(s);
                }
                next.extend(c.made.iter().map(|p| p.expand(&stars)));
            }
        }
        keys = next;
    }
    keys
}

/// The tensors a checkpoint that went through `converters` held, from the model's: each
/// converter undone, last first. `stored` (the checkpoint's shapes, when export follows one)
/// gives a merge its part sizes, a reshape its shape and a weight norm its magnitude's shape.
pub(crate) fn undo(
    converters: &[Compiled],
    mut tensors: Vec<(String, TensorData)>,
    stored: Option<&HashMap<String, Vec<usize>>>,
) -> Result<Vec<(String, TensorData)>> {
    for c in converters.iter().rev() {
        tensors = undo_one(c, tensors, stored)?;
    }
    Ok(tensors)
}

fn undo_one(
    c: &Compiled,
    tensors: Vec<(String, TensorData)>,
    stored: Option<&HashMap<String, Vec<usize>>>,
) -> Result<Vec<(String, TensorData)>> {
    let shape_of = |key: &str| stored.and_then(|s| s.get(key));
    let at: HashMap<String, usize> = tensors
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    let mut replaced: HashMap<usize, Vec<(String, TensorData)>> = HashMap::new();
    let mut used: HashSet<usize> = HashSet::new();
    for (i, (key, data)) in tensors.iter().enumerate() {
        let Some(stars) = c.made[0].matches(key) else {
            continue;
        };
        let names: Vec<String> = c.stored.iter().map(|p| p.expand(&stars)).collect();
        let shape = data.shape().to_vec();
        let back: Vec<(String, TensorData)> = match &c.converter {
            Converter::Merge { axis, .. } => {
                let n = names.len();
                let sizes: Vec<usize> = match names
                    .iter()
                    .map(|k| shape_of(k).and_then(|s| s.get(*axis).copied()))
                    .collect::<Option<Vec<_>>>()
                {
                    Some(sizes) if sizes.iter().sum::<usize>() == shape[*axis] => sizes,
                    _ if shape[*axis].is_multiple_of(n) => vec![shape[*axis] / n; n],
                    _ => {
                        return Err(c.refuse(format!(
                            "exporting `{key}` {shape:?}: {} along axis {axis} is not {n} equal parts, and no checkpoint gives the sizes",
                            shape[*axis]
                        )));
                    }
                };
                names.into_iter().zip(split(data, *axis, &sizes)).collect()
            }
            Converter::Split { axis, .. } => {
                let mut parts = vec![data.clone()];
                for p in &c.made[1..] {
                    let k = p.expand(&stars);
                    let j = *at.get(&k).ok_or_else(|| {
                        c.refuse(format!(
                            "exporting: `{k}` (with `{key}`) is not in the model"
                        ))
                    })?;
                    used.insert(j);
                    parts.push(tensors[j].1.clone());
                }
                vec![(names[0].clone(), concat(&parts, *axis))]
            }
            Converter::Transpose { axes, .. } => {
                let forward = permutation(c, axes, shape.len(), key)?;
                let mut inverse = vec![0; forward.len()];
                for (i, &a) in forward.iter().enumerate() {
                    inverse[a] = i;
                }
                vec![(names[0].clone(), permute(data, &inverse))]
            }
            Converter::Reshape { .. } => match shape_of(key) {
                Some(to) if to.iter().product::<usize>() == data.num_elements() => vec![(
                    names[0].clone(),
                    TensorData::from_bytes_vec(data.as_bytes().to_vec(), to.clone(), data.dtype()),
                )],
                _ => vec![(key.clone(), data.clone())],
            },
            Converter::FoldWeightNorm { .. } => {
                let (g_key, v_key) = (names[0].clone(), names[1].clone());
                let g_shape = shape_of(&g_key).cloned().unwrap_or_else(|| {
                    let mut g = vec![1; shape.len()];
                    if let Some(first) = g.first_mut() {
                        *first = shape[0];
                    }
                    g
                });
                let dim = weight_norm::norm_dim(&g_shape, &shape)
                    .map_err(|why| c.refuse(format!("exporting `{key}`: {why}")))?;
                let w: Vec<f32> = data
                    .clone()
                    .convert_dtype(burn::tensor::DType::F32)
                    .try_into_vec::<f32>()
                    .map_err(|e| c.refuse(format!("exporting `{key}`: {e:?}")))?;
                let g = weight_norm::norms(&w, &shape, dim);
                vec![
                    (
                        g_key,
                        TensorData::new(g, g_shape).convert_dtype(data.dtype()),
                    ),
                    (v_key, data.clone()),
                ]
            }
        };
        used.insert(i);
        replaced.insert(i, back);
    }
    let mut out = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.into_iter().enumerate() {
        if let Some(back) = replaced.remove(&i) {
            out.extend(back);
        } else if !used.contains(&i) {
            out.push(t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_and_expand_both_ways() {
        let p = Pattern::new("*.gate_proj.weight").unwrap();
        let stars = p.matches("layers.3.mlp.gate_proj.weight").unwrap();
        assert_eq!(stars, ["layers.3.mlp"]);
        assert_eq!(
            Pattern::new("*.gate_up.weight").unwrap().expand(&stars),
            "layers.3.mlp.gate_up.weight"
        );
        assert!(p.matches("layers.3.mlp.gate_proj.bias").is_none());
        // Literal characters are literal, dots included.
        assert!(Pattern::new("a.b").unwrap().matches("axb").is_none());
    }

    #[test]
    fn permute_moves_axes() {
        let data = TensorData::new((0..6).map(|x| x as f32).collect::<Vec<_>>(), [2, 3]);
        let t = permute(&data, &[1, 0]);
        assert_eq!(t.shape().to_vec(), [3, 2]);
        assert_eq!(t.try_into_vec::<f32>().unwrap(), [0., 3., 1., 4., 2., 5.]);
        let data = TensorData::new((0..24).map(|x| x as f32).collect::<Vec<_>>(), [2, 3, 4]);
        let t = permute(&data, &[2, 0, 1]);
        assert_eq!(t.shape().to_vec(), [4, 2, 3]);
        // out[k][i][j] = in[i][j][k]: out[3][1][2] = in[1][2][3], at 1·12 + 2·4 + 3.
        let v = t.try_into_vec::<f32>().unwrap();
        let (i, j, k) = (1, 2, 3);
        assert_eq!(v[(k * 2 + i) * 3 + j], (i * 12 + j * 4 + k) as f32);
    }

    #[test]
    fn mismatched_wildcards_and_shapes_are_refused() {
        let err = Compiled::new(&Converter::Merge {
            from: vec!["*.a".into(), "b".into()],
            into: "*.c".into(),
            axis: 0,
        })
        .unwrap_err();
        assert!(err.to_string().contains("same number"), "{err}");
        assert!(resolve_shape(&[3, -1], 12).unwrap() == [3, 4]);
        assert!(resolve_shape(&[5, -1], 12).is_err());
    }
}
