//! A real S3-compatible server on loopback: moto's server (`pip install 'moto[server]'`,
//! which `.ci/run` does), started per test on a free port and stopped on drop. Objects are put
//! with the `object_store` crate, the same engine the loader reads with.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

/// The access key the tests use (moto accepts any).
pub const KEY_ID: &str = "test-key-id";
/// The secret the tests use.
pub const SECRET: &str = "test-secret";

/// A running moto server.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Start `moto_server` (or `$MOTO_SERVER`) on a free port and wait until it answers;
    /// `None` (after saying so) when it is not installed, unless the CI requires it.
    pub fn start() -> Option<Self> {
        let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = crate::spawn_emulator(
            Command::new(&program).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            "S3 emulator",
            "pip install 'moto[server]'",
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Self { child, port })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Create `bucket` (if needed) and put `key` in it.
    pub fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        // moto creates a bucket on a plain `PUT /bucket`.
        create_bucket(&self.endpoint(), bucket);
        let store = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .build()
            .expect("s3 client");
        runtime
            .block_on(store.put(&StorePath::from(key), PutPayload::from(bytes)))
            .expect("put object");
    }
}

/// `PUT /bucket` as a raw request.
fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect to moto");
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "create bucket: {response}"
    );
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
