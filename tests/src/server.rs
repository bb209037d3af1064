//! A real HTTP/1.1 server on 127.0.0.1 for the source tests, with fault modes. Each route
//! answers ranged GETs (`Range: bytes=N-` / `bytes=N-M`) and counts what it sent.
//! Routes under `/{org}/{repo}/resolve/{revision}/{file}` also answer like the Hugging Face
//! Hub (`etag`, `x-repo-commit`, `Content-Range`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a route behaves.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// Serve the bytes.
    Serve(Vec<u8>),
    /// 404.
    NotFound,
    /// Answer 500 `n` times, then serve.
    FailThenServe(usize, Vec<u8>),
    /// On the first request, send `n` bytes of the body (announcing all) and close; then
    /// serve, ranged requests included.
    ResetAfter(usize, Vec<u8>),
    /// Always announce the whole body but send only its first half, and ignore ranges.
    ShortBody(Vec<u8>),
    /// Wait this long before answering at all.
    Slow(Duration, Vec<u8>),
    /// Serve the whole body whatever range is asked for (a server without range support).
    NoRanges(Vec<u8>),
}

/// What the server saw on one route.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Requests received.
    pub requests: usize,
    /// Responses that sent a body from byte 0 to the end.
    pub full_transfers: usize,
    /// Body bytes sent.
    pub bytes_sent: usize,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Behavior>,
    counters: HashMap<String, Counters>,
}

/// The server; it runs until the test process ends.
#[allow(missing_debug_implementations)]
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TestServer {
    /// Bind 127.0.0.1:0 and serve in the background.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
        });
        Self { addr, state }
    }

    /// Add a route.
    pub fn route(&self, path: &str, behavior: Behavior) -> String {
        self.state
            .lock()
            .expect("server state")
            .routes
            .insert(path.to_string(), behavior);
        format!("{}{path}", self.base())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the server saw on `path`.
    pub fn counters(&self, path: &str) -> Counters {
        self.state
            .lock()
            .expect("server state")
            .counters
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

fn handle(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let path = path.split('?').next().unwrap_or("/").to_string();
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("range")
            && let Some(spec) = value.trim().strip_prefix("bytes=")
            && let Some((from, to)) = spec.split_once('-')
        {
            range = from.parse().ok().map(|f| (f, to.parse().ok()));
        }
    }
    let (behavior, nth) = {
        let mut s = state.lock().expect("server state");
        let behavior = s.routes.get(&path).cloned();
        let c = s.counters.entry(path.clone()).or_default();
        c.requests += 1;
        (behavior, c.requests)
    };
    let mut out = stream;
    let hub = path.contains("/resolve/");
    let send = |out: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        out.write_all(body)?;
        out.flush()
    };
    let count = |from: usize, sent: usize, total: usize| {
        let mut s = state.lock().expect("server state");
        let c = s.counters.entry(path.clone()).or_default();
        c.bytes_sent += sent;
        if from == 0 && sent == total && total > 1 {
            c.full_transfers += 1;
        }
    };
    let serve = |out: &mut TcpStream, body: &[u8], range: Option<(usize, Option<usize>)>| {
        let total = body.len();
        let mut headers = Vec::new();
        if hub {
            headers.push(("etag".into(), format!("\"{:x}\"", total * 7919)));
            headers.push((
                "x-repo-commit".into(),
                "0123456789abcdef0123456789abcdef01234567".into(),
            ));
        }
        match range {
            Some((from, _)) if from >= total && total > 0 => {
                headers.push(("Content-Range".into(), format!("bytes */{total}")));
                send(out, "416 Range Not Satisfiable", &headers, b"")
            }
            Some((from, to)) => {
                let end = to.map(|t| (t + 1).min(total)).unwrap_or(total);
                let part = &body[from..end];
                headers.push(("Content-Length".into(), part.len().to_string()));
                headers.push((
                    "Content-Range".into(),
                    format!("bytes {from}-{}/{total}", end - 1),
                ));
                count(from, part.len(), total);
                send(out, "206 Partial Content", &headers, part)
            }
            None => {
                headers.push(("Content-Length".into(), total.to_string()));
                count(0, total, total);
                send(out, "200 OK", &headers, body)
            }
        }
    };
    match behavior {
        None | Some(Behavior::NotFound) => send(
            &mut out,
            "404 Not Found",
            &[("Content-Length".into(), "0".into())],
            b"",
        ),
        Some(Behavior::Serve(body)) => serve(&mut out, &body, range),
        Some(Behavior::FailThenServe(n, body)) => {
            if nth <= n {
                send(
                    &mut out,
                    "500 Internal Server Error",
                    &[("Content-Length".into(), "0".into())],
                    b"",
                )
            } else {
                serve(&mut out, &body, range)
            }
        }
        Some(Behavior::ResetAfter(n, body)) => {
            if nth == 1 {
                let headers = [("Content-Length".into(), body.len().to_string())];
                let _ = send(&mut out, "200 OK", &headers, &body[..n]);
                count(0, n, body.len());
                out.shutdown(std::net::Shutdown::Both)
            } else {
                serve(&mut out, &body, range)
            }
        }
        Some(Behavior::ShortBody(body)) => {
            let half = body.len() / 2;
            let headers = [("Content-Length".into(), body.len().to_string())];
            count(0, half, body.len());
            let _ = send(&mut out, "200 OK", &headers, &body[..half]);
            out.shutdown(std::net::Shutdown::Both)
        }
        Some(Behavior::Slow(delay, body)) => {
            std::thread::sleep(delay);
            serve(&mut out, &body, range)
        }
        Some(Behavior::NoRanges(body)) => serve(&mut out, &body, None),
    }
}
