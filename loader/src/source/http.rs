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

    /// Open `url` for ranged reads: a range of the first bytes tells the size and whether
    /// the server answers ranges at all (`Ok(None)` when it does not), and is kept.
    pub fn open_ranged(&self, url: &url::Url) -> Result<Option<RangedHttp>> {
        let shown = redact(url.as_str());
        let mut reader = RangedHttp {
            client: self.client(&shown)?,
            url: url.clone(),
            shown,
            len: 0,
            head: Vec::new(),
        };
        match reader.range(0, PROBE) {
            Ok(Ranged::Bytes { bytes, total }) => {
                reader.len = total;
                reader.head = bytes;
                Ok(Some(reader))
            }
            Ok(Ranged::Whole) => Ok(None),
            Err(RangeError::NotFound) => Err(Error::NotFound { uri: reader.shown }),
            Err(RangeError::Failed(reason)) => Err(Error::Download {
                uri: reader.shown,
                source: reason,
            }),
        }
    }
}

/// The one retry policy of every request: up to `ATTEMPTS` tries of `once`, waiting 200 ms,
/// 400 ms, … between them (each retry logged); the last reason says that it gave up.
fn retrying<T>(
    shown: &str,
    mut once: impl FnMut() -> std::result::Result<T, Failure>,
) -> std::result::Result<T, Failure> {
    let mut attempt = 1;
    loop {
        match once() {
            Err(Failure::Retry(reason)) if attempt < ATTEMPTS => {
                let wait = Duration::from_millis(100 << attempt);
                tracing::warn!(
                    "{shown}: {reason}; retrying in {wait:?} (attempt {attempt}/{ATTEMPTS})"
                );
                std::thread::sleep(wait);
                attempt += 1;
            }
            Err(Failure::Retry(reason)) => {
                return Err(Failure::Retry(format!(
                    "{reason} (gave up after {ATTEMPTS} attempts)"
                )));
            }
            other => return other,
        }
    }
}

/// The error and its causes, without the URL reqwest puts in (it may carry secrets).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn attempt_once(
    client: &reqwest::blocking::Client,
    url: &url::Url,
    shown: &str,
    file: &mut File,
    have: u64,
) -> std::result::Result<(), Failure> {
    let io_fatal = |e: std::io::Error| {
        Failure::Fatal(Error::Download {
            uri: shown.to_string(),
            source: context("writing the cache file", e),
        })
    };
    let mut request = client.get(url.clone());
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().map_err(|e| Failure::Retry(describe(e)))?;
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let length: Option<u64> = header(CONTENT_LENGTH).and_then(|v| v.parse().ok());
    let start = match status {
        StatusCode::OK => {
            // The whole file: start over.
            file.set_len(0).map_err(io_fatal)?;
            0
        }
        StatusCode::PARTIAL_CONTENT => {
            let from = header(CONTENT_RANGE).and_then(|v| {
                v.strip_prefix("bytes ")?
                    .split('-')
                    .next()?
                    .parse::<u64>()
                    .ok()
            });
            if from != Some(have) {
                file.set_len(0).map_err(io_fatal)?;
                return Err(Failure::Retry(format!(
                    "server resumed at {from:?}, not at byte {have}; starting over"
                )));
            }
            have
        }
        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
            let total =
                header(CONTENT_RANGE).and_then(|v| v.rsplit('/').next()?.parse::<u64>().ok());
            if total == Some(have) {
                return Ok(());
            }
            file.set_len(0).map_err(io_fatal)?;
            return Err(Failure::Retry(
                "the partial download no longer fits; starting over".into(),
            ));
        }
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            return Err(Failure::Fatal(Error::NotFound {
                uri: shown.to_string(),
            }));
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            return Err(Failure::Retry(format!("server answered {s}")));
        }
        s => {
            return Err(Failure::Fatal(Error::Download {
                uri: shown.to_string(),
                source: format!("server answered {s}").into(),
            }));
        }
    };
    file.seek(SeekFrom::End(0)).map_err(io_fatal)?;
    let total = length.map(|l| start + l);
    let progress = progress_bar(shown, total, start);
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match response.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                progress.abandon();
                return Err(Failure::Retry(format!(
                    "connection lost after {} bytes: {e}",
                    start + received
                )));
            }
        };
        file.write_all(&buf[..n]).map_err(io_fatal)?;
        received += n as u64;
        progress.inc(n as u64);
    }
    progress.finish_and_clear();
    if let Some(l) = length
        && received != l
    {
        return Err(Failure::Retry(format!(
            "body ended after {received} of {l} bytes"
        )));
    }
    Ok(())
}

fn progress_bar(shown: &str, total: Option<u64>, start: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "Downloading {msg} {percent}% {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    );
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(shown.to_string());
    bar.set_position(start);
    bar
}

/// A remote file read by HTTP range requests (for [`Pretrain::with_ranged`]), over one
/// keep-alive client.
pub(super) struct RangedHttp {
    client: reqwest::blocking::Client,
    url: url::Url,
    shown: String,
    len: u64,
    /// The first bytes, from the probe: what format sniffing and a header length read.
    head: Vec<u8>,
}

/// How many bytes the probe asks for: what sniffing looks at.
const PROBE: u64 = 512;

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
