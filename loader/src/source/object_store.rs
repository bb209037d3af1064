//! `s3://`, `gs://` and `az://` through the `object_store` crate. Credentials and endpoints
//! come from the environment as each store documents it (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` / `AWS_ENDPOINT_URL` for MinIO or
//! Aliyun OSS, `AWS_ALLOW_HTTP` for a plain-HTTP endpoint; `GOOGLE_*`; `AZURE_*`), or the
//! endpoint from the spec.

use std::fs::File;
use std::io::Write;

use futures::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};

use super::StoreScheme;
use crate::error::{Cause, Error, Result, context};
use crate::source::bytes::ByteSource;

/// One object of a store, with the endpoint the load resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Object<'a> {
    pub scheme: StoreScheme,
    pub bucket: &'a str,
    pub key: &'a str,
    /// The spec's endpoint (an S3-compatible server), which wins over the environment's.
    pub endpoint: Option<&'a str>,
}

#[cfg_attr(not(feature = "s3"), allow(unused_variables))]
fn store(object: &Object<'_>) -> object_store::Result<Box<dyn ObjectStore>> {
    let bucket = object.bucket;
    match object.scheme {
        #[cfg(feature = "s3")]
        StoreScheme::S3 => {
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            // The spec's endpoint wins over the environment's (`AWS_ENDPOINT` is read by
            // `from_env`; `AWS_ENDPOINT_URL` is the AWS CLI's name for it).
            let endpoint = object
                .endpoint
                .map(str::to_string)
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
            if let Some(endpoint) = endpoint {
                // An S3-compatible endpoint has no instance metadata service: without
                // credentials, requests go unsigned (a public bucket) instead of asking the
                // cloud metadata address.
                if !aws_credentials_in_env() {
                    tracing::info!(
                        "no AWS credentials in the environment: unsigned requests to {endpoint}"
                    );
                    builder = builder.with_skip_signature(true);
                }
                builder = builder
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_endpoint(endpoint);
            }
            Ok(Box::new(builder.build()?))
        }
        #[cfg(feature = "gcs")]
        StoreScheme::Gcs => Ok(Box::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .build()?,
        )),
        #[cfg(feature = "azure")]
        StoreScheme::Azure => Ok(Box::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .build()?,
        )),
        #[allow(unreachable_patterns)]
        other => Err(object_store::Error::NotSupported {
            source: format!("{other:?} needs its cargo feature (s3, gcs, azure)").into(),
        }),
    }
}

/// Where object_store looks for AWS credentials in the environment.
const AWS_CREDENTIALS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
];

fn aws_credentials_in_env() -> bool {
    AWS_CREDENTIALS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// A store's error, with where credentials were looked for when the environment had none:
/// with an endpoint the requests went unsigned; without one, object_store asked the instance
/// metadata service, which only a cloud VM answers.
fn store_error(object: &Object<'_>, e: object_store::Error) -> Cause {
    if object.scheme == StoreScheme::S3 && !aws_credentials_in_env() {
        let endpoint = object.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        let then = if endpoint {
            "so the requests to the endpoint were unsigned"
        } else {
            "so the instance metadata service was asked"
        };
        return context(
            &format!(
                "no AWS credentials in the environment ({}), {then}",
                AWS_CREDENTIALS.join(", ")
            ),
            e,
        );
    }
    e.into()
}

/// A current-thread runtime, the store and the object's path: what every operation starts with.
impl Object<'_> {
    /// `s3://bucket/key`, as every message shows it.
    fn shown(&self) -> String {
        super::Location::Store {
            scheme: self.scheme,
            bucket: self.bucket.to_string(),
            key: self.key.to_string(),
        }
        .to_string()
    }

    fn connect(&self) -> Result<(tokio::runtime::Runtime, Box<dyn ObjectStore>, StorePath)> {
        let fail = |source: Cause| Error::Download {
            uri: self.shown(),
            source,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(context("async runtime", e)))?;
        let store = store(self).map_err(|e| fail(store_error(self, e)))?;
        Ok((runtime, store, StorePath::from(self.key)))
    }

    /// Download the object into `file` (opened for appending, holding `offset` bytes).
    pub fn download(&self, file: &mut File, offset: u64) -> Result<()> {
        let shown = self.shown();
        let fail = |source: Cause| Error::Download {
            uri: shown.clone(),
            source,
        };
        let (runtime, store, path) = self.connect()?;
        runtime.block_on(async {
            let get = GetOptions {
                range: (offset > 0).then_some(GetRange::Offset(offset)),
                ..GetOptions::default()
            };
            let result = match store.get_opts(&path, get).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(Error::NotFound { uri: shown.clone() });
                }
                Err(e) => return Err(fail(store_error(self, e))),
            };
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fail(store_error(self, e)))?;
                file.write_all(&chunk)
                    .map_err(|e| fail(context("writing the cache file", e)))?;
            }
            Ok(())
        })
    }

    /// Open the object for ranged reads (`head` for its size).
    pub fn open_ranged(&self) -> Result<RangedObject> {
        let (runtime, store, path) = self.connect()?;
        let meta = match runtime.block_on(store.head(&path)) {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NotFound { uri: self.shown() });
            }
            Err(e) => {
                return Err(Error::Download {
                    uri: self.shown(),
                    source: store_error(self, e),
                });
            }
        };
        Ok(RangedObject {
            runtime,
            store,
            path,
            len: meta.size,
        })
    }
}

pub(super) struct RangedObject {
    runtime: tokio::runtime::Runtime,
    store: Box<dyn ObjectStore>,
    path: StorePath,
    len: u64,
}

/// Open an object for ranged reads: one HEAD for its size.
impl ByteSource for RangedObject {
    fn len(&self) -> u64 {
        self.len
    }

    /// A request costs a round trip: reading up to 1 MiB of unplanned bytes is cheaper.
    fn gap_worth_reading(&self) -> u64 {
        1 << 20
    }

    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let range = offset..offset + len as u64;
        let bytes = self
            .runtime
            .block_on(self.store.get_range(&self.path, range))
            .map_err(std::io::Error::other)?;
        if bytes.len() != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("asked for {len} bytes at {offset}, got {}", bytes.len()),
            ));
        }
        Ok(bytes.to_vec())
    }
}
