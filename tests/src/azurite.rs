//! A real Azure Blob Storage server on loopback: Azurite (`npm install azurite`, which
//! `.ci/run` does), started per test on a free port with its data in a temporary folder and
//! stopped on drop. Containers and blobs are created with Microsoft's Python SDK
//! (`pip install azure-storage-blob`, also installed by `.ci/run`): object_store cannot
//! create containers.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account and key (public, documented by Microsoft).
const ACCOUNT: &str = "devstoreaccount1";
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const UPLOAD: &str = r#"
import sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
service = BlobServiceClient.from_connection_string(sys.argv[1])
try:
    service.create_container(sys.argv[2])
except ResourceExistsError:
    pass
with open(sys.argv[4], "rb") as f:
    service.get_blob_client(sys.argv[2], sys.argv[3]).upload_blob(f, overwrite=True)
"#;

/// A running Azurite blob service.
#[derive(Debug)]
pub struct Azurite {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// Start `azurite-blob` (or `$AZURITE_BLOB`) on a free port and wait until it answers;
    /// `None` (after saying so) when it or the Python SDK is not installed, unless the CI
    /// requires them.
    pub fn start() -> Option<Self> {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let sdk = Command::new(&python)
            .args(["-c", "import azure.storage.blob"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !sdk.is_ok_and(|s| s.success()) {
            crate::emulator_missing(
                "Azure's Python SDK",
                &format!("`{python}` cannot import azure.storage.blob"),
                "pip install azure-storage-blob",
            );
            return None;
        }
        let program = std::env::var("AZURITE_BLOB").unwrap_or_else(|_| "azurite-blob".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let data = tempfile::tempdir().expect("a folder for azurite");
        let child = crate::spawn_emulator(
            Command::new(&program)
                .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                .args([
                    "--skipApiVersionCheck",
                    "--silent",
                    "--loose",
                    "--disableTelemetry",
                ])
                .arg("--location")
                .arg(data.path()),
            "Azure emulator",
            "npm install azurite",
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "azurite did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Self {
            child,
            port,
            _data: data,
        })
    }

    /// The blob service's URL, what `AZURITE_BLOB_STORAGE_URL` names for object_store.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create `container` (if needed) and upload `bytes` as `blob` with the Python SDK.
    pub fn put(&self, container: &str, blob: &str, bytes: &[u8]) {
        let file = tempfile::NamedTempFile::new().expect("a temp file");
        std::fs::write(file.path(), bytes).expect("write the blob's bytes");
        let connection = format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};BlobEndpoint={}/{ACCOUNT};",
            self.url()
        );
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let out = Command::new(&python)
            .args(["-c", UPLOAD, &connection, container, blob])
            .arg(file.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{python}` ({e})"));
        assert!(
            out.status.success(),
            "uploading {container}/{blob} failed (needs `pip install azure-storage-blob`, .ci/run installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
