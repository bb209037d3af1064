//! Sources: where a checkpoint is → a local file the formats can read.
//!
//! One parser ([`Location::parse`]) turns the `path` of a [`Pretrain`] into a location; local
//! paths are used in place, every remote scheme downloads through the one cache (atomic
//! rename, resume, sha256, a lock so N processes download once). One file per scheme, each
//! behind a cargo feature: `http` (reqwest), `s3`/`gcs`/`azure` (`object_store`), `hf` (`hf-hub`).

// Without http or an object store compiled in, most of the cache is unused (hf-hub downloads
// by itself into a folder of ours).
pub(crate) mod bytes;
#[cfg_attr(not(any(feature = "http", feature = "object-store")), allow(dead_code))]
mod cache;
mod fetcher;
#[cfg(feature = "hf")]
mod hf;
#[cfg(feature = "http")]
mod http;
pub mod local;
#[cfg(feature = "object-store")]
mod object_store;
pub(crate) mod options;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub(crate) use cache::Cache;
pub(crate) use fetcher::Fetcher;
pub use fetcher::TIMEOUT_ENV;
pub use options::FetchOptions;

/// The object stores reached through the `object_store` crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreScheme {
    /// `s3://bucket/key` (AWS S3, MinIO, Aliyun OSS and other S3-compatible stores).
    S3,
    /// `gs://bucket/key` (Google Cloud Storage).
    Gcs,
    /// `az://container/key` (Azure Blob Storage).
    Azure,
}

/// Where a checkpoint lives, parsed from a spec's `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local file (a plain path or `file://`).
    Local(PathBuf),
    /// `http://` or `https://`.
    Http(url::Url),
    /// An object store: scheme, bucket (container) and key.
    Store {
        /// Which store.
        scheme: StoreScheme,
        /// The bucket or container.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// `hf://org/repo[@revision]/path/in/repo`: a file of a Hugging Face Hub model repo.
    Hub {
        /// `org/repo`.
        repo: String,
        /// A branch, tag or commit (`main` when absent).
        revision: Option<String>,
        /// The file's path in the repo.
        file: String,
    },
}

impl Location {
    /// Parse a checkpoint location. Anything without `scheme://` is a local path.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidUri {
            uri: redact(s),
            source: why.into(),
        };
        let unparsable = |e: url::ParseError| Error::InvalidUri {
            uri: redact(s),
            source: e.into(),
        };
        let Some((scheme, rest)) = s.split_once("://") else {
            if s.is_empty() {
                return Err(invalid("empty path"));
            }
            return Ok(Location::Local(PathBuf::from(s)));
        };
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "file" => {
                let url = url::Url::parse(s).map_err(unparsable)?;
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("a file:// URL needs an absolute path"))?;
                Ok(Location::Local(path))
            }
            "http" | "https" => {
                // The URL standard reads `http:///x` as host `x`; a user meant a missing host.
                if rest.starts_with('/') || rest.is_empty() {
                    return Err(invalid("no host"));
                }
                let url = url::Url::parse(s).map_err(unparsable)?;
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("no host"));
                }
                Ok(Location::Http(url))
            }
            "s3" | "gs" | "az" => {
                let store = match scheme.as_str() {
                    "s3" => StoreScheme::S3,
                    "gs" => StoreScheme::Gcs,
                    _ => StoreScheme::Azure,
                };
                let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
                let credentials = match store {
                    StoreScheme::S3 => {
                        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE's web identity, the instance role)"
                    }
                    StoreScheme::Gcs => "GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS",
                    StoreScheme::Azure => {
                        "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_KEY"
                    }
                };
                if rest.contains('@') || rest.contains(['?', '#']) {
                    return Err(invalid(&format!(
                        "credentials, tokens or queries in an {scheme}:// location are not used (and not shown); give them in the environment: {credentials}"
                    )));
                }
                if bucket.is_empty() {
                    return Err(invalid("no bucket"));
                }
                if key.is_empty() || key.ends_with('/') {
                    return Err(invalid("no object key (a file, not a folder)"));
                }
                Ok(Location::Store {
                    scheme: store,
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                })
            }
            "hf" => {
                if rest.contains(['?', '#']) {
                    return Err(invalid(
                        "tokens or queries in an hf:// location are not used (and not shown); set HF_TOKEN in the environment",
                    ));
                }
                let mut parts = rest.splitn(3, '/');
                let (Some(org), Some(repo), Some(file)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(invalid("expected hf://org/repo[@revision]/path/in/repo"));
                };
                let (repo, revision) = match repo.split_once('@') {
                    Some((r, rev)) if !rev.is_empty() => (r, Some(rev.to_string())),
                    Some(_) => return Err(invalid("empty revision after `@`")),
                    None => (repo, None),
                };
                if org.is_empty() || repo.is_empty() || file.is_empty() || file.ends_with('/') {
                    return Err(invalid("expected hf://org/repo[@revision]/path/in/repo"));
                }
                Ok(Location::Hub {
                    repo: format!("{org}/{repo}"),
                    revision,
                    file: file.to_string(),
                })
            }
            other => Err(invalid(&format!(
                "unsupported scheme `{other}://`; use a path, file://, http(s)://, s3://, gs://, az:// or hf://"
            ))),
        }
    }

    /// The file `name` (a relative path, already checked to stay inside) in the same folder as
    /// this one: how the shards of a sharded checkpoint are found beside their index.
    pub(crate) fn sibling(&self, name: &str) -> Location {
        let beside = |path: &str| match path.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        match self {
            Location::Local(path) => {
                Location::Local(path.parent().unwrap_or(Path::new("")).join(name))
            }
            Location::Http(url) => {
                let mut sibling = url.clone();
                sibling.set_query(None);
                sibling.set_fragment(None);
                let path = beside(url.path());
                sibling.set_path(&path);
                Location::Http(sibling)
            }
            Location::Store {
                scheme,
                bucket,
                key,
            } => Location::Store {
                scheme: *scheme,
                bucket: bucket.clone(),
                key: beside(key),
            },
            Location::Hub {
                repo,
                revision,
                file,
            } => Location::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
                file: beside(file),
            },
        }
    }

    /// What names this location's cache entry: an http URL in full (its secrets may select
    /// the object), otherwise the shown URI.
    fn cache_key(&self) -> String {
        match self {
            Location::Http(url) => url.as_str().to_string(),
            other => other.to_string(),
        }
    }

    /// The file name the cache entry keeps (the last path segment).
    fn file_name(&self) -> String {
        let last = match self {
            Location::Local(p) => {
                return p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            Location::Http(url) => url
                .path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or(""),
            Location::Store { key, .. } => key.rsplit('/').next().unwrap_or(key),
            Location::Hub { file, .. } => file.rsplit('/').next().unwrap_or(file),
        };
        let clean: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if clean.is_empty() {
            "checkpoint".into()
        } else {
            clean
        }
    }
}

impl fmt::Display for Location {
    /// The location with secrets removed (userinfo, query strings).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Http(url) => f.write_str(&redact(url.as_str())),
            Location::Store {
                scheme,
                bucket,
                key,
            } => {
                let s = match scheme {
                    StoreScheme::S3 => "s3",
                    StoreScheme::Gcs => "gs",
                    StoreScheme::Azure => "az",
                };
                write!(f, "{s}://{bucket}/{key}")
            }
            Location::Hub {
                repo,
                revision,
                file,
            } => match revision {
                Some(rev) => write!(f, "hf://{repo}@{rev}/{file}"),
                None => write!(f, "hf://{repo}/{file}"),
            },
        }
    }
}

/// A URI with what may be secret removed: userinfo becomes `***@`, a query string `?***`, a
/// fragment `#***`. The one redaction behind every `Display`, error and log line of a location.
///
/// Userinfo is taken up to the last `@` before any `?` or `#`, even past a `/`: a password
/// with an unencoded `/` (`https://u:pa/ss@host/x`) is still hidden (`hf://org/repo@rev/...`
/// uses `@` for a revision and has no userinfo).
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let (before, secret_tail) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let before = if scheme.eq_ignore_ascii_case("hf") {
        before.to_string()
    } else {
        match before.rsplit_once('@') {
            Some((_, after)) => format!("***@{after}"),
            None => before.to_string(),
        }
    };
    let tail = match secret_tail.chars().next() {
        Some('?') => match secret_tail.find('#') {
            Some(_) => "?***#***",
            None => "?***",
        },
        Some(_) => "#***",
        None => "",
    };
    format!("{scheme}://{before}{tail}")
}

/// A checkpoint made local.
#[derive(Debug)]
pub(crate) struct Fetched {
    /// The file to open.
    pub path: PathBuf,
    /// Whether it is a cache entry (fetched again if it does not parse).
    pub cached: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_locations() {
        let table: &[(&str, Location)] = &[
            ("pretrain.pth", Location::Local("pretrain.pth".into())),
            ("/abs/dir/x.pth", Location::Local("/abs/dir/x.pth".into())),
            (
                "file:///abs/x%20y.pth",
                Location::Local("/abs/x y.pth".into()),
            ),
            (
                "s3://bucket/dir/ssl.pth",
                Location::Store {
                    scheme: StoreScheme::S3,
                    bucket: "bucket".into(),
                    key: "dir/ssl.pth".into(),
                },
            ),
            (
                "S3://bucket/dir/ssl.pth",
                Location::Store {
                    scheme: StoreScheme::S3,
                    bucket: "bucket".into(),
                    key: "dir/ssl.pth".into(),
                },
            ),
            (
                "gs://b/k.safetensors",
                Location::Store {
                    scheme: StoreScheme::Gcs,
                    bucket: "b".into(),
                    key: "k.safetensors".into(),
                },
            ),
            (
                "GS://b/k.safetensors",
                Location::Store {
                    scheme: StoreScheme::Gcs,
                    bucket: "b".into(),
                    key: "k.safetensors".into(),
                },
            ),
            (
                "Az://container/a/b.pth",
                Location::Store {
                    scheme: StoreScheme::Azure,
                    bucket: "container".into(),
                    key: "a/b.pth".into(),
                },
            ),
            (
                "az://container/a/b.pth",
                Location::Store {
                    scheme: StoreScheme::Azure,
                    bucket: "container".into(),
                    key: "a/b.pth".into(),
                },
            ),
            (
                "hf://org/repo/model.safetensors",
                Location::Hub {
                    repo: "org/repo".into(),
                    revision: None,
                    file: "model.safetensors".into(),
                },
            ),
            (
                "hf://org/repo@v1.0/sub/dir/model.pth",
                Location::Hub {
                    repo: "org/repo".into(),
                    revision: Some("v1.0".into()),
                    file: "sub/dir/model.pth".into(),
                },
            ),
        ];
        for (input, want) in table {
            assert_eq!(&Location::parse(input).unwrap(), want, "{input}");
        }
        let http =
            Location::parse("https://download.pytorch.org/models/resnet50-0676ba61.pth").unwrap();
        assert!(matches!(http, Location::Http(_)));
        assert_eq!(http.file_name(), "resnet50-0676ba61.pth");
    }

    #[test]
    fn rejected_locations() {
        let table: &[(&str, &str)] = &[
            ("", "empty path"),
            ("ftp://host/x.pth", "unsupported scheme `ftp://`"),
            ("http:///x.pth", "no host"),
            ("https://", "no host"),
            ("s3://", "no bucket"),
            ("s3://bucket", "no object key"),
            ("s3://bucket/dir/", "no object key"),
            (
                "hf://org/repo",
                "expected hf://org/repo[@revision]/path/in/repo",
            ),
            ("hf://org/repo@/x.pth", "empty revision after `@`"),
            ("file://relative", "a file:// URL needs an absolute path"),
        ];
        for (input, reason) in table {
            let err = crate::error::chain(&Location::parse(input).unwrap_err());
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn shards_are_found_beside_their_index() {
        let table: &[(&str, &str)] = &[
            (
                "/data/m/model.safetensors.index.json",
                "/data/m/shard-1.bin",
            ),
            ("model.safetensors.index.json", "shard-1.bin"),
            (
                "https://host.example/repo/m/index.json?sig=secret#x",
                "https://host.example/repo/m/shard-1.bin",
            ),
            (
                "s3://bucket/ckpt/m/index.json",
                "s3://bucket/ckpt/m/shard-1.bin",
            ),
            ("s3://bucket/index.json", "s3://bucket/shard-1.bin"),
            (
                "hf://org/repo@v2/weights/index.json",
                "hf://org/repo@v2/weights/shard-1.bin",
            ),
            ("hf://org/repo/index.json", "hf://org/repo/shard-1.bin"),
        ];
        for (index, want) in table {
            let sibling = Location::parse(index).unwrap().sibling("shard-1.bin");
            assert_eq!(sibling, Location::parse(want).unwrap(), "{index}");
        }
    }

    #[test]
    fn secrets_never_show() {
        let loc =
            Location::parse("https://user:hunter2@host.example/x.pth?X-Amz-Signature=abc&token=t")
                .unwrap();
        let shown = loc.to_string();
        assert_eq!(shown, "https://***@host.example/x.pth?***");
        let err = Location::parse("ftp://user:hunter2@host/x?sig=1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2") && !err.contains("sig=1"), "{err}");
    }

    /// Every scheme, every place a secret can sit: userinfo, query, fragment, a password with
    /// an unencoded `/`; shown locations and errors (with their causes) never carry them.
    #[test]
    fn secrets_never_show_for_any_scheme() {
        let secret = "hunter2";
        let cases = [
            "http://user:hunter2@host/x.pth",
            "https://host/x.pth?token=hunter2",
            "https://host/x.pth#access_token=hunter2",
            "https://host/x.pth?a=1#access_token=hunter2",
            "https://user:pa/hunter2@host/x.pth",
            "s3://user:hunter2@bucket/x.pth",
            "s3://bucket/x.pth?X-Amz-Signature=hunter2",
            "gs://bucket/x.pth#hunter2",
            "az://container/x.pth?sv=2022&sig=hunter2",
            "az://account:hunter2@container/x.pth",
            "file://user:hunter2@/x.pth",
            "hf://org/repo/x.pth?token=hunter2",
            "ftp://user:hunter2@host/x",
        ];
        for uri in cases {
            let redacted = redact(uri);
            assert!(!redacted.contains(secret), "{uri} → {redacted}");
            let shown = match Location::parse(uri) {
                Ok(loc) => loc.to_string(),
                Err(e) => crate::error::chain(&e),
            };
            assert!(!shown.contains(secret), "{uri} → {shown}");
        }
        assert_eq!(
            redact("https://user:pa/ss@host/x.pth?a=1#t"),
            "https://***@host/x.pth?***#***"
        );
        assert_eq!(redact("hf://org/repo@v1/x.pth"), "hf://org/repo@v1/x.pth");
        // Found by fuzz/run.sh (location): a file:// URL whose path spells a URL is a local
        // path, shown as given; redaction of it is stable.
        let odd = "file:///ab\u{12}https://user:pw@hosttos/";
        assert_eq!(
            Location::parse(odd).unwrap(),
            Location::Local("/ab\u{12}https://user:pw@hosttos/".into())
        );
        assert_eq!(redact(&redact(odd)), redact(odd));
        let err = crate::error::chain(&Location::parse("s3://k:hunter2@b/x.pth").unwrap_err());
        assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
    }
}
