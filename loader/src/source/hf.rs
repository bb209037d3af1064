//! `hf://org/repo[@revision]/path` through the `hf-hub` crate, with its cache rooted inside
//! ours (`<cache>/hf`) so one folder holds every download. The endpoint comes from the spec or
//! `HF_ENDPOINT`; a token from `HF_TOKEN`.

use std::path::PathBuf;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Repo, RepoType};

use super::Cache;
use crate::error::{Cause, Error, Result};

/// One file of a Hub model repository, with the endpoint the load resolved.
#[derive(Debug, Clone, Copy)]
pub(super) struct HubFile<'a> {
    /// `org/repo`.
    pub repo: &'a str,
    /// A branch, tag or commit (`main` when absent).
    pub revision: Option<&'a str>,
    /// The file's path in the repo.
    pub file: &'a str,
    /// The spec's endpoint (a Hub mirror), which wins over `HF_ENDPOINT`.
    pub endpoint: Option<&'a str>,
}

impl HubFile<'_> {
    /// The file in `cache`, downloaded unless it is there (`refetch`: downloaded again).
    pub fn fetch(&self, cache: &Cache, refetch: bool) -> Result<PathBuf> {
        let shown = &super::Location::Hub {
            repo: self.repo.to_string(),
            revision: self.revision.map(str::to_string),
            file: self.file.to_string(),
        }
        .to_string();
        fetch(cache, self, shown, refetch)
    }
}

fn fetch(cache: &Cache, hub: &HubFile<'_>, shown: &str, refetch: bool) -> Result<PathBuf> {
    let HubFile {
        repo,
        revision,
        file,
        endpoint,
    } = *hub;
    let fail = |source: Cause| Error::Download {
        uri: shown.to_string(),
        source,
    };
    let hf_cache = hf_hub::Cache::new(cache.dir().join("hf"));
    let revision = revision.unwrap_or("main").to_string();
    let repo_handle = Repo::with_revision(repo.to_string(), RepoType::Model, revision.clone());
    if !refetch && let Some(path) = hf_cache.repo(repo_handle.clone()).get(file) {
        return Ok(path);
    }
    if cache.offline() {
        return Err(Error::Offline {
            uri: shown.to_string(),
            cache: cache.dir().join("hf"),
        });
    }
    let mut builder = ApiBuilder::from_cache(hf_cache)
        .with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Some(endpoint) = endpoint
        .map(str::to_string)
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
    {
        builder = builder.with_endpoint(endpoint);
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| fail(e.into()))?;
    let repo_api = api.repo(repo_handle);
    let result = if refetch {
        repo_api.download(file)
    } else {
        repo_api.get(file)
    };
    result.map_err(|e| match e {
        ApiError::RequestError(ref inner)
            if matches!(**inner, ureq::Error::Status(404 | 410, _)) =>
        {
            Error::NotFound {
                uri: shown.to_string(),
            }
        }
        other => fail(other.into()),
    })
}
