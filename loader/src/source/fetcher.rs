//! [`Fetcher`]: one load's fetch settings, resolved once from the spec's [`FetchOptions`]
//! and the environment (cache folder, offline switch, timeout), owning the cache and the HTTP
//! client every request of the load shares (the checkpoint, its shards, ranged reads).

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "hf")]
use super::hf;
#[cfg(feature = "http")]
use super::http;
#[cfg(feature = "object-store")]
use super::object_store;
use super::{Cache, FetchOptions, Fetched, Location, StoreScheme, bytes::ByteSource};
use crate::error::{Error, Result};

/// Environment variable: seconds a connect, read or write may take (default 30).
pub const TIMEOUT_ENV: &str = "BURN_PRETRAIN_TIMEOUT";
/// The timeout when neither the spec nor the environment gives one.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How this load reaches its checkpoint: [`FetchOptions`] with every default filled in.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    cache: Cache,
    /// The expected sha256 prefix, lowercase hex.
    sha256: Option<String>,
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    endpoint: Option<String>,
    ranged: bool,
    #[cfg(feature = "http")]
    http: http::Client,
}

impl Fetcher {
    /// Resolve `options`: the spec's values, else the environment's, else the defaults. A
    /// sha256 that is not 8 to 64 hex digits is refused here, before anything is fetched.
    pub fn new(options: &FetchOptions) -> Result<Self> {
        let sha256 = options.sha256.as_deref().map(check_sha256).transpose()?;
        let timeout = options.timeout.unwrap_or_else(|| {
            std::env::var(TIMEOUT_ENV)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| *s > 0.0)
                .map(super::options::seconds::from_secs)
                .unwrap_or(DEFAULT_TIMEOUT)
        });
        #[cfg(not(feature = "http"))]
        let _ = timeout;
        Ok(Self {
            cache: Cache::new(options.cache_dir.as_deref(), options.offline),
            sha256,
            endpoint: options.endpoint.clone(),
            ranged: options.ranged,
            #[cfg(feature = "http")]
            http: http::Client::new(timeout),
        })
    }

    /// The same settings for the shards of a sharded checkpoint: the spec's sha256 is the
    /// index's, shards have none.
    pub fn for_shards(&self) -> Self {
        Self {
            sha256: None,
            ..self.clone()
        }
    }

    /// The timeout of every request.
    #[cfg(all(test, feature = "http"))]
    pub fn timeout(&self) -> Duration {
        self.http.timeout()
    }

    /// A remote file to read by byte ranges, when the spec asks for it (`with_ranged`) and
    /// the scheme can: `http(s)://` whose server answers ranges, and the object stores.
    /// `Ok(None)`: fetch the whole file as usual (a local path, `hf://`, offline, already
    /// cached, a server without ranges, or a sha256 to check: a hash needs the whole file).
    #[cfg_attr(
        not(any(feature = "http", feature = "object-store")),
        allow(unused_variables)
    )]
    pub fn open_ranged(&self, location: &Location) -> Result<Option<Arc<dyn ByteSource>>> {
        if !self.ranged {
            return Ok(None);
        }
        // Ranges read part of a file; a hash is of all of it. With a sha256 the file is
        // downloaded whole and checked, never read unchecked.
        if let Some(sha256) = &self.sha256 {
            if matches!(location, Location::Http(_) | Location::Store { .. }) {
                tracing::warn!(
                    "{location}: not read by ranges, downloaded whole to check its sha256 {sha256} (ranges cannot check a hash)"
                );
            }
            return Ok(None);
        }
        if self.cache.offline()
            || self
                .cache
                .entry(&location.cache_key(), &location.file_name())
                .exists()
        {
            return Ok(None);
        }
        match location {
            #[cfg(feature = "http")]
            Location::Http(url) => {
                let reader = self.http.open_ranged(url)?;
                if reader.is_none() {
                    tracing::info!(
                        "{location} does not answer range requests; downloading it whole"
                    );
                }
                Ok(reader.map(|r| Arc::new(r) as _))
            }
            #[cfg(feature = "object-store")]
            Location::Store {
                scheme,
                bucket,
                key,
            } => {
                let reader = self.object(*scheme, bucket, key).open_ranged()?;
                Ok(Some(Arc::new(reader)))
            }
            _ => Ok(None),
        }
    }

    /// Make the checkpoint at `location` a local file, downloading into the cache if it is
    /// remote. `refetch` drops a cache entry first (it failed to parse).
    #[cfg_attr(
        not(any(feature = "http", feature = "object-store", feature = "hf")),
        allow(unused_variables)
    )]
    pub fn fetch(&self, location: &Location, refetch: bool) -> Result<Fetched> {
        let sha256 = self.sha256.as_deref();
        match location {
            Location::Local(path) => Ok(Fetched {
                path: path.clone(),
                cached: false,
            }),
            #[cfg(feature = "http")]
            Location::Http(url) => {
                let path = self
                    .cache
                    .fetch(location, sha256, refetch, |file, offset| {
                        self.http.download(url, file, offset)
                    })?;
                Ok(Fetched { path, cached: true })
            }
            #[cfg(feature = "object-store")]
            Location::Store {
                scheme,
                bucket,
                key,
            } => {
                let object = self.object(*scheme, bucket, key);
                let path = self
                    .cache
                    .fetch(location, sha256, refetch, |file, offset| {
                        object.download(file, offset)
                    })?;
                Ok(Fetched { path, cached: true })
            }
            #[cfg(feature = "hf")]
            Location::Hub {
                repo,
                revision,
                file,
            } => {
                let file = hf::HubFile {
                    repo,
                    revision: revision.as_deref(),
                    file,
                    endpoint: self.endpoint.as_deref(),
                };
                let path = file.fetch(&self.cache, refetch)?;
                Ok(Fetched { path, cached: true })
            }
            #[allow(unreachable_patterns)]
            _ => Err(Error::SchemeDisabled {
                uri: location.to_string(),
                feature: match location {
                    Location::Http(_) => "http",
                    Location::Store {
                        scheme: StoreScheme::S3,
                        ..
                    } => "s3",
                    Location::Store {
                        scheme: StoreScheme::Gcs,
                        ..
                    } => "gcs",
                    Location::Store {
                        scheme: StoreScheme::Azure,
                        ..
                    } => "azure",
                    _ => "hf",
                },
            }),
        }
    }

    #[cfg(feature = "object-store")]
    fn object<'a>(
        &'a self,
        scheme: StoreScheme,
        bucket: &'a str,
        key: &'a str,
    ) -> object_store::Object<'a> {
        object_store::Object {
            scheme,
            bucket,
            key,
            endpoint: self.endpoint.as_deref(),
        }
    }
}

/// A sha256 as given: 8 to 64 hex digits (a prefix is enough), lowercased.
fn check_sha256(given: &str) -> Result<String> {
    let hex = given.trim();
    if !(8..=64).contains(&hex.len()) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidSpec {
            field: "sha256".into(),
            detail: format!(
                "`{given}` is not a sha256: give 8 to 64 hex digits (the whole hash or its prefix)"
            ),
        });
    }
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sha256_is_8_to_64_hex_digits() {
        assert_eq!(check_sha256("0676BA61").unwrap(), "0676ba61");
        for bad in ["", "0676ba6", "not-a-hash", &"a".repeat(65)] {
            let err = check_sha256(bad).unwrap_err().to_string();
            assert!(err.contains("is not a sha256"), "{bad}: {err}");
        }
    }

    #[cfg(feature = "http")]
    #[test]
    fn the_spec_timeout_wins_and_the_default_is_30_seconds() {
        let given = FetchOptions {
            timeout: Some(Duration::from_millis(2500)),
            ..FetchOptions::default()
        };
        assert_eq!(
            Fetcher::new(&given).unwrap().timeout(),
            Duration::from_millis(2500)
        );
        if std::env::var_os(TIMEOUT_ENV).is_none() {
            let default = Fetcher::new(&FetchOptions::default()).unwrap();
            assert_eq!(default.timeout(), DEFAULT_TIMEOUT);
        }
    }
}
