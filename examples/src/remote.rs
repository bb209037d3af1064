//! burn's remote device on loopback: a server in this process (burn's own `RemoteServer` over
//! WebSocket, backed by a local device), and a TCP proxy in front of it that counts the bytes
//! each way — the measure of "every tensor crosses the connection once".
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use burn::prelude::*;
//! use burn_pretrain_examples::remote;
//!
//! let server = remote::serve(Device::flex())?; // ws://127.0.0.1:PORT
//! let proxy = remote::CountingProxy::start(&server)?;
//! let device = remote::connect(proxy.url())?;
//! // ... load a model onto `device` ...
//! println!("{} bytes sent", proxy.sent());
//! # Ok(())
//! # }
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use burn::prelude::*;
use burn::remote::RemoteHost;
use burn::server::{RemoteServer, WebSocketTransport};

/// Serves `device` to remote clients from a thread of this process, on a free loopback port;
/// returns its URL (`ws://127.0.0.1:PORT`). The server lives as long as the process.
pub fn serve(device: Device) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let url = format!("ws://{}", listener.local_addr()?);
    std::thread::Builder::new()
        .name("burn-remote-server".into())
        .spawn(move || {
            if let Err(e) =
                RemoteServer::new([device]).serve(WebSocketTransport::from_listener(listener))
            {
                eprintln!("burn remote server: {e}");
            }
        })?;
    Ok(url)
}

/// The device 0 of the burn remote server at `url` (`ws://HOST:PORT`), connected.
pub fn connect(url: &str) -> anyhow::Result<Device> {
    Device::remote_options(&RemoteHost::websocket(url))
        .init()
        .with_context(|| format!("connecting to the burn remote server at {url}"))
}

/// A loopback TCP proxy to a `ws://HOST:PORT` server that counts the bytes it forwards: `sent`
/// from clients to the server, `received` back. Every connection it accepts is forwarded.
#[derive(Debug)]
pub struct CountingProxy {
    url: String,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl CountingProxy {
    pub fn start(server_url: &str) -> anyhow::Result<Self> {
        let target = server_url
            .strip_prefix("ws://")
            .with_context(|| format!("{server_url}: not a ws:// URL"))?
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
        let url = format!("ws://{}", listener.local_addr()?);
        let sent = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (up, down) = (sent.clone(), received.clone());
        std::thread::Builder::new()
            .name("counting-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone())
                    else {
                        continue;
                    };
                    let (up, down) = (up.clone(), down.clone());
                    std::thread::spawn(move || pipe(client, server, &up));
                    std::thread::spawn(move || pipe(server2, client2, &down));
                }
            })?;
        Ok(Self {
            url,
            sent,
            received,
        })
    }

    /// The proxy's URL, for clients.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Bytes forwarded from clients to the server so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, adding every byte to `count`.
fn pipe(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// Bytes of tensor data `module` holds: every float, int and bool tensor, in its dtype. Call it
/// on a loaded module (a parameter not yet initialised is initialised by it).
pub fn held_bytes<M: burn::module::Module>(module: &M) -> u64 {
    use burn::module::{ModuleVisitor, Param};
    struct Held(u64);
    fn bytes(shape: burn::tensor::Shape, dtype: burn::tensor::DType) -> u64 {
        (shape.num_elements() * dtype.size()) as u64
    }
    impl ModuleVisitor for Held {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            self.0 += bytes(t.shape(), t.dtype());
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
            let t = param.val();
            self.0 += bytes(t.shape(), t.dtype());
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
            let t = param.val();
            self.0 += bytes(t.shape(), t.dtype());
        }
    }
    let mut held = Held(0);
    module.visit(&mut held);
    held.0
}
