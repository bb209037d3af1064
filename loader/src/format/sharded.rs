//! Sharded checkpoints: one state dict spread over several files and an `*.index.json` that
//! says which file holds which tensor — the layout of `save_pretrained` and
//! `huggingface_hub.save_torch_state_dict` (`model.safetensors.index.json`,
//! `pytorch_model.bin.index.json`):
//!
//! ```json
//! {"metadata": {"total_size": 312416},
//!  "weight_map": {"conv1.weight": "model-00001-of-00003.safetensors", ...}}
//! ```
//!
//! The shards are found next to the index (the same folder, URL directory, bucket prefix or
//! Hub repo folder) and opened like any other checkpoint; the result is one [`Checkpoint`]
//! whose tensors keep the index's (state dict) order.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use super::{Checkpoint, Opened, TensorEntry};
use crate::error::{Cause, Error, Result};

/// The parsed `*.index.json`: `(tensor key, shard file)` pairs in document order.
#[derive(Debug, Clone)]
pub(crate) struct ShardIndex {
    weight_map: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RawIndex {
    #[serde(deserialize_with = "in_document_order")]
    weight_map: Vec<(String, String)>,
}

/// A JSON object as its pairs, in the order written (a map would lose the state dict order).
fn in_document_order<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<(String, String)>, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object mapping tensor keys to shard file names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    de.deserialize_map(Pairs)
}

impl ShardIndex {
    /// Parse `text` (the JSON file at `path`) as a shard index.
    pub(crate) fn parse(text: &[u8], path: &Path) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| Error::UnknownFormat {
                path: path.to_path_buf(),
                found: format!("text that is not valid JSON ({e})"),
            })?;
        if value.get("weight_map").is_none() {
            return Err(Error::UnknownFormat {
                path: path.to_path_buf(),
                found: "a JSON file without a `weight_map` (not a shard index like \
                        model.safetensors.index.json)"
                    .into(),
            });
        }
        let raw: RawIndex = serde_json::from_slice(text).map_err(|e| Error::ShardIndex {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let index = Self {
            weight_map: raw.weight_map,
        };
        for name in index.shards() {
            check_shard_name(name).map_err(|reason| Error::ShardIndex {
                path: path.to_path_buf(),
                source: format!("shard name `{name}` {reason}").into(),
            })?;
        }
        Ok(index)
    }

    /// The shard files, in the order the index first names them.
    pub(crate) fn shards(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        self.weight_map
            .iter()
            .map(|(_, shard)| shard.as_str())
            .filter(|shard| seen.insert(*shard))
            .collect()
    }
}

/// A shard is named relative to its index: plain path segments only, so that an index cannot
/// point outside its folder or at another host.
fn check_shard_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.contains([':', '\\', '?', '#']) {
        return Err("must be a relative file name (no `:`, `\\`, `?` or `#`)");
    }
    if !Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err("must stay inside the index's folder (no `/`-rooted path, `.` or `..`)");
    }
    Ok(())
}

/// One checkpoint from the shards of `index` (read from `index_path`); `open_shard` opens a
/// shard by its name in the index.
pub(crate) fn merge(
    index_path: &Path,
    index: &ShardIndex,
    mut open_shard: impl FnMut(&str) -> Result<Checkpoint>,
) -> Result<Checkpoint> {
    let fail = |source: Cause| Error::ShardIndex {
        path: index_path.to_path_buf(),
        source,
    };
    let names = index.shards();
    if names.is_empty() {
        return Err(Error::NoTensors {
            path: index_path.to_path_buf(),
        });
    }
    let mut first: Option<Checkpoint> = None;
    let mut shard_paths = Vec::with_capacity(names.len());
    // key → (shard name, entry), and keys in the order the shards hold them.
    let mut found: HashMap<String, (&str, TensorEntry)> = HashMap::new();
    let mut shard_order: Vec<String> = Vec::new();
    for name in names {
        let shard = open_shard(name)?;
        if let Some(first) = &first
            && first.convention != shard.convention
        {
            return Err(fail(
                format!(
                    "shard `{name}` names tensors the {:?} way, the first shard the {:?} way",
                    shard.convention, first.convention
                )
                .into(),
            ));
        }
        for entry in &shard.entries {
            if let Some((other, _)) = found.get(entry.key()) {
                return Err(fail(
                    format!("tensor `{}` is in both `{other}` and `{name}`", entry.key()).into(),
                ));
            }
            shard_order.push(entry.key().to_string());
            found.insert(entry.key().to_string(), (name, entry.clone()));
        }
        shard_paths.push(shard.path.clone());
        if first.is_none() {
            first = Some(shard);
        }
    }
    let mut entries = Vec::with_capacity(found.len());
    // Keys already taken: a key the weight_map repeats is looked up once (not by a scan).
    let mut taken: HashSet<&str> = HashSet::with_capacity(found.len());
    for (key, shard) in &index.weight_map {
        match found.remove(key) {
            Some((name, entry)) if name == shard => {
                taken.insert(key);
                entries.push(entry);
            }
            Some((name, _)) => {
                return Err(fail(
                    format!("the index puts `{key}` in `{shard}`, but it is in `{name}`").into(),
                ));
            }
            None if taken.contains(key.as_str()) => {}
            None => {
                return Err(fail(
                    format!("the index puts `{key}` in `{shard}`, which does not hold it").into(),
                ));
            }
        }
    }
    // Tensors a shard holds but the index does not list: kept (the shard is the data), after
    // the listed ones.
    let extra: Vec<String> = shard_order
        .into_iter()
        .filter(|k| found.contains_key(k))
        .collect();
    if !extra.is_empty() {
        tracing::warn!(
            "{} tensors of {} are in its shards but not in its weight_map (first: `{}`); loading them too",
            extra.len(),
            index_path.display(),
            extra[0]
        );
    }
    for key in extra {
        if let Some((_, entry)) = found.remove(&key) {
            entries.push(entry);
        }
    }
    let first = first.ok_or_else(|| fail("no shards".into()))?;
    Ok(Checkpoint::assemble(
        index_path.to_path_buf(),
        first.format,
        first.convention,
        entries,
        shard_paths,
    ))
}

impl Opened {
    /// The checkpoint a shard file holds; a shard that is itself an index is refused.
    pub(crate) fn into_shard(self, index_path: &Path, name: &str) -> Result<Checkpoint> {
        match self {
            Opened::Tensors(shard) => Ok(shard),
            Opened::Index(_) => Err(Error::ShardIndex {
                path: index_path.to_path_buf(),
                source: format!("shard `{name}` is itself a shard index").into(),
            }),
        }
    }
}

/// Where shard `name` of the index at `index_path` lies on the local disk.
pub(crate) fn local_shard(index_path: &Path, name: &str) -> PathBuf {
    index_path.parent().unwrap_or(Path::new("")).join(name)
}

#[cfg(test)]
mod tests {
    use super::check_shard_name;

    #[test]
    fn shard_names_stay_beside_their_index() {
        for ok in ["model-00001-of-00002.safetensors", "sub/dir/shard.bin"] {
            assert_eq!(check_shard_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "../secret.bin",
            "/etc/passwd",
            "a/../../b",
            "./x.bin",
            "https://evil.example/x",
            "x.bin?sig=1",
            "c:\\x.bin",
        ] {
            assert!(check_shard_name(bad).is_err(), "{bad}");
        }
    }
}
