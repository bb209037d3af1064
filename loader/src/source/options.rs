//! [`FetchOptions`]: the user's say on how a remote checkpoint is fetched, as written in code
//! or a config. Resolved once per load into a [`Fetcher`](super::Fetcher).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a remote checkpoint is fetched: integrity, cache, network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// The expected sha256 (full, or a prefix of at least 8 hex digits) of a download.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Use only the cache, never download.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// The cache folder (else `$BURN_PRETRAIN_CACHE`, else `~/.cache/burn-pretrain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<String>,
    /// The endpoint of an S3-compatible store or of a Hub mirror.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// How long a connect, read or write may take (else `$BURN_PRETRAIN_TIMEOUT`, else 30 s).
    /// In configs: seconds, a positive number.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds::serialize",
        deserialize_with = "seconds::deserialize"
    )]
    pub timeout: Option<Duration>,
    /// Read remote safetensors by byte ranges instead of downloading them whole.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ranged: bool,
}

/// Timeouts as seconds in configs.
pub(crate) mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let Some(seconds) = Option::<f64>::deserialize(d)? else {
            return Ok(None);
        };
        if seconds.is_nan() || seconds <= 0.0 {
            return Err(serde::de::Error::custom(format!(
                "timeout must be a positive number of seconds, not {seconds}"
            )));
        }
        Ok(Some(from_secs(seconds)))
    }

    /// Seconds as a duration; longer than a `Duration` holds (1e300 s) is no practical limit.
    pub fn from_secs(seconds: f64) -> Duration {
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    }
}
