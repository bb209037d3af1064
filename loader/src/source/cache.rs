//! The one download cache of every remote scheme.
//!
//! An entry is `<dir>/<first 16 hex of sha256(uri)>-<file name>`, so two URLs with the same
//! file name never collide. Downloads go to `<entry>.part` and are renamed only when complete
//! and verified; an interrupted `.part` is resumed. A lock file per entry makes N processes
//! asking at once transfer it once: the first downloads, the others wait and find it done.
//! A sha256 is checked when one is known: given in the spec, or torch hub's
//! `name-<hex8>.pth` naming. An entry that fails to verify is fetched again, never used.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::source::Location;

/// Environment variable naming the cache folder.
pub const CACHE_ENV: &str = "BURN_PRETRAIN_CACHE";
/// Environment variable that, set to `1`/`true`, forbids downloads (cache only).
pub const OFFLINE_ENV: &str = "BURN_PRETRAIN_OFFLINE";

#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
    offline: bool,
}

fn home_cache() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg);
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache"))
        .unwrap_or_else(std::env::temp_dir)
}

impl Cache {
    /// The cache in `dir`, else `$BURN_PRETRAIN_CACHE`, else `$XDG_CACHE_HOME/burn-pretrain`
    /// or `~/.cache/burn-pretrain`; offline when asked or `$BURN_PRETRAIN_OFFLINE` says so.
    pub fn new(dir: Option<&str>, offline: bool) -> Self {
        let dir = dir
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os(CACHE_ENV)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| home_cache().join("burn-pretrain"));
        let env_offline = std::env::var(OFFLINE_ENV)
            .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
            .unwrap_or(false);
        Self {
            dir,
            offline: offline || env_offline,
        }
    }

    #[cfg_attr(not(feature = "hf"), allow(dead_code))]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn offline(&self) -> bool {
        self.offline
    }

    /// The entry path for `key_uri` (the full URI, secrets included: they may select the
    /// object) and its file name.
    pub fn entry(&self, key_uri: &str, file_name: &str) -> PathBuf {
        let digest = hex(&Sha256::digest(key_uri.as_bytes()));
        self.dir.join(format!("{}-{file_name}", &digest[..16]))
    }

    /// Return a verified local copy of `location`, downloading it with `download(file,
    /// offset)` if needed: `file` is the `.part` file opened for appending, `offset` how many
    /// bytes it already holds. `sha256` is the expected hash (lowercase hex, or a prefix of
    /// it), else torch hub's in the file name. `refetch` drops the entry first (it failed to
    /// parse).
    pub fn fetch(
        &self,
        location: &Location,
        sha256: Option<&str>,
        refetch: bool,
        download: impl FnOnce(&mut File, u64) -> Result<()>,
    ) -> Result<PathBuf> {
        let shown = &location.to_string();
        let key_uri = &location.cache_key();
        let file_name = &location.file_name();
        let cache_err = |path: &Path, source: io::Error| Error::Cache {
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(|e| cache_err(&self.dir, e))?;
        let entry = self.entry(key_uri, file_name);
        let expected = sha256
            .map(str::to_string)
            .or_else(|| torch_hub_hash(file_name));

        let lock_path = with_suffix(&entry, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| cache_err(&lock_path, e))?;
        // Held until this function returns: one download per entry across processes.
        lock.lock().map_err(|e| cache_err(&lock_path, e))?;

        if refetch {
            let _ = fs::remove_file(&entry);
        }
        if entry.exists() {
            match verify(&entry, expected.as_deref()) {
                Ok(()) => return Ok(entry),
                Err(found) => {
                    tracing::warn!(
                        "cached {} fails its sha256 check (found {found}); fetching it again",
                        entry.display()
                    );
                    fs::remove_file(&entry).map_err(|e| cache_err(&entry, e))?;
                }
            }
        }
        if let Some(hit) = torch_hub_copy(file_name, expected.as_deref()) {
            tracing::info!("using {} from the PyTorch hub cache", hit.display());
            return Ok(hit);
        }
        if self.offline {
            return Err(Error::Offline {
                uri: shown.to_string(),
                cache: entry,
            });
        }
        let part = with_suffix(&entry, ".part");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&part)
            .map_err(|e| cache_err(&part, e))?;
        let offset = file.metadata().map_err(|e| cache_err(&part, e))?.len();
        if offset > 0 {
            tracing::info!("resuming {shown} at byte {offset}");
        }
        if let Err(e) = download(&mut file, offset) {
            // A failure that ends the download keeps nothing half-written; only a process
            // killed mid-transfer leaves a `.part`, which the next fetch resumes.
            drop(file);
            let _ = fs::remove_file(&part);
            return Err(e);
        }
        file.sync_all().map_err(|e| cache_err(&part, e))?;
        drop(file);
        if let Err(found) = verify(&part, expected.as_deref()) {
            let _ = fs::remove_file(&part);
            return Err(Error::HashMismatch {
                uri: shown.to_string(),
                expected: expected.unwrap_or_default(),
                found,
            });
        }
        fs::rename(&part, &entry).map_err(|e| cache_err(&entry, e))?;
        Ok(entry)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// `Ok` when no hash is expected or the file's sha256 starts with the expected hex; else the
/// hash found.
fn verify(path: &Path, expected: Option<&str>) -> std::result::Result<(), String> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match sha256_file(path) {
        Ok(found) if found.starts_with(expected) => Ok(()),
        Ok(found) => Err(found),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

/// torch hub names checkpoints `name-<first 8+ hex of sha256>.ext`.
pub(crate) fn torch_hub_hash(file_name: &str) -> Option<String> {
    let stem = file_name.split('.').next()?;
    let (_, hash) = stem.rsplit_once('-')?;
    (hash.len() >= 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hash.to_ascii_lowercase())
}

/// A file already in PyTorch's hub cache with this name and the expected hash.
fn torch_hub_copy(file_name: &str, expected: Option<&str>) -> Option<PathBuf> {
    let expected = expected?;
    let torch_home = std::env::var_os("TORCH_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home_cache().join("torch"));
    let candidate = torch_home.join("hub").join("checkpoints").join(file_name);
    (candidate.is_file() && verify(&candidate, Some(expected)).is_ok()).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_hub_names_carry_a_hash_prefix() {
        assert_eq!(
            torch_hub_hash("resnet50-0676ba61.pth").as_deref(),
            Some("0676ba61")
        );
        assert_eq!(
            torch_hub_hash("resnet18-f37072fd.pth").as_deref(),
            Some("f37072fd")
        );
        assert_eq!(torch_hub_hash("model-final.pth"), None);
        assert_eq!(torch_hub_hash("weights.pth"), None);
    }

    #[test]
    fn same_file_name_from_two_urls_gets_two_entries() {
        let cache = Cache {
            dir: "/c".into(),
            offline: false,
        };
        let a = cache.entry("https://a.example/model.pth", "model.pth");
        let b = cache.entry("https://b.example/model.pth", "model.pth");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().ends_with("-model.pth"));
    }
}
