//! `http://` and `https://` through reqwest: ranged resume, retries with backoff on 5xx,
//! 429 and lost connections, a per-operation timeout, and a progress bar on a terminal; and
//! [`RangedHttp`], the same server read by byte ranges for [`Pretrain::with_ranged`].

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};

use super::redact;
use crate::error::{Cause, Error, Result, context};
use crate::source::bytes::ByteSource;

const ATTEMPTS: u32 = 5;

enum Failure {
    /// Worth another try, resuming where the file ends.
    Retry(String),
    /// Final.
    Fatal(Error),
}

/// The HTTP side of one load: its timeout and one reqwest client (one connection pool),
/// built on first use and shared by the download, ranged reads and the shards.
#[derive(Debug, Clone)]
pub(super) struct Client {
    timeout: Duration,
    pool: Arc<Mutex<Option<reqwest::blocking::Client>>>,
}

impl Client {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            pool: Arc::default(),
        }
    }

    #[cfg(test)]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The client, built the first time a request needs it.
    fn client(&self, shown: &str) -> Result<reqwest::blocking::Client> {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = pool.as_ref() {
            return Ok(client.clone());
        }
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| Error::Download {
                uri: shown.to_string(),
                source: context("http client", e),
            })?;
        *pool = Some(client.clone());
        Ok(client)
    }

    /// Download `url` into `file` (opened for appending, holding `offset` bytes already).
    pub fn download(&self, url: &url::Url, file: &mut File, offset: u64) -> Result<()> {
        let shown = &redact(url.as_str());
        let client = self.client(shown)?;
        let mut have = offset;
        let result = retrying(shown, || {
            let result = attempt_once(&client, url, shown, file, have);
            // A retry resumes from what the file holds now.
            have = file.metadata().map(|m| m.len()).unwrap_or(0);
            result
        });
        match result {
            Ok(()) => Ok(()),
            Err(Failure::Fatal(e)) => Err(e),
            Err(Failure::Retry(reason)) => Err(Error::Download {
                uri: shown.to_string(),
                source: reason.into(),
            }),
        }
    }

    enum Ranged {
    /// The bytes asked for, and the file's size.
    Bytes { bytes: Vec<u8>, total: u64 },
    /// The server ignored the range (it would send the whole file).
    Whole,
}

enum RangeError {
    NotFound,
    Failed(Cause),
}

impl RangedHttp {
    /// `len` bytes from `offset`, retried with backoff on 5xx, 429, lost connections and
    /// short bodies.
    fn range(&self, offset: u64, len: u64) -> std::result::Result<Ranged, RangeError> {
        match retrying(&self.shown, || self.range_once(offset, len)) {
            Ok(r) => Ok(r),
            Err(Failure::Fatal(Error::NotFound { .. })) => Err(RangeError::NotFound),
            Err(Failure::Fatal(Error::Download { source, .. })) => Err(RangeError::Failed(source)),
            Err(Failure::Fatal(e)) => Err(RangeError::Failed(e.into())),
            Err(Failure::Retry(reason)) => Err(RangeError::Failed(reason.into())),
        }
    }

    fn range_once(&self, offset: u64, len: u64) -> std::result::Result<Ranged, Failure> {
        let last = offset + len - 1;
        let response = self
            .client
            .get(self.url.clone())
            .header(RANGE, format!("bytes={offset}-{last}"))
            .send()
            .map_err(|e| Failure::Retry(describe(e)))?;
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {}
            // Dropping the response closes the connection without reading the body.
            StatusCode::OK => return Ok(Ranged::Whole),
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                return Err(Failure::Fatal(Error::NotFound {
                    uri: self.shown.clone(),
                }));
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                return Err(Failure::Retry(format!("server answered {s}")));
            }
            s => {
                return Err(Failure::Fatal(Error::Download {
                    uri: self.shown.clone(),
                    source: format!("server answered {s} to a range request").into(),
                }));
            }
        }
        // `Content-Range: bytes FIRST-LAST/TOTAL`
        let content_range = response
            .headers()
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes "))
            .and_then(|v| {
                let (span, total) = v.split_once('/')?;
                let (first, _) = span.split_once('-')?;
                Some((first.parse::<u64>().ok()?, total.parse::<u64>().ok()?))
            });
        let Some((first, total)) = content_range else {
            return Err(Failure::Fatal(Error::Download {
                uri: self.shown.clone(),
                source: "a 206 answer without a usable Content-Range".into(),
            }));
        };
        if first != offset {
            return Err(Failure::Fatal(Error::Download {
                uri: self.shown.clone(),
                source: format!("asked for bytes from {offset}, got them from {first}").into(),
            }));
        }
        let bytes = response
            .bytes()
            .map_err(|e| Failure::Retry(format!("connection lost: {}", describe(e))))?;
        let want = len.min(total.saturating_sub(offset));
        if bytes.len() as u64 != want {
            return Err(Failure::Retry(format!(
                "range body ended after {} of {want} bytes",
                bytes.len()
            )));
        }
        Ok(Ranged::Bytes {
            bytes: bytes.to_vec(),
            total,
        })
    }
}

impl ByteSource for RangedHttp {
    fn len(&self) -> u64 {
        self.len
    }

    /// A request costs a round trip: reading up to 1 MiB of unplanned bytes is cheaper.
    fn gap_worth_reading(&self) -> u64 {
        1 << 20
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        if let Some(bytes) = usize::try_from(offset)
            .ok()
            .and_then(|start| self.head.get(start..start.checked_add(len)?))
        {
            return Ok(bytes.to_vec());
        }
        match self.range(offset, len as u64) {
            Ok(Ranged::Bytes { bytes, .. }) if bytes.len() == len => Ok(bytes),
            Ok(Ranged::Bytes { bytes, .. }) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "asked for {len} bytes at {offset}, the file has {}",
                    bytes.len()
                ),
            )),
            Ok(Ranged::Whole) => Err(std::io::Error::other(
                "the server stopped answering range requests",
            )),
            Err(RangeError::NotFound) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the file is gone (404)",
            )),
            Err(RangeError::Failed(reason)) => Err(std::io::Error::other(reason)),
        }
    }
}
