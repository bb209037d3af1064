//! `pretrain serve`: a device of this machine served to burn's remote backend over WebSocket
//! (burn's own `RemoteServer`), for `--device ws://HOST:PORT` here or any burn program's
//! `Device::remote_options`. Blocks until Ctrl+C or SIGTERM.

use crate::cli::ServeArgs;

#[cfg(feature = "remote")]
pub fn run(args: ServeArgs) -> anyhow::Result<i32> {
    use std::io::Write;

    use anyhow::Context;
    use burn::server::{RemoteServer, WebSocketTransport};

    use crate::cli::DeviceArg;
    use crate::load;

    if let DeviceArg::Remote(url) = &args.device {
        anyhow::bail!("--device {url}: a remote device cannot be served again; name a local one");
    }
    let device = load::device(&args.device)?;
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("--listen {}: cannot bind", args.listen))?;
    let address = listener.local_addr()?;
    // The first line says where: with port 0 the caller learns the port from it.
    let mut out = std::io::stdout().lock();
    writeln!(out, "serving {} on ws://{address}", args.device)?;
    out.flush()?;
    drop(out);
    RemoteServer::new([device])
        .serve(WebSocketTransport::from_listener(listener))
        .with_context(|| format!("serving on ws://{address}"))?;
    Ok(0)
}

#[cfg(not(feature = "remote"))]
pub fn run(_args: ServeArgs) -> anyhow::Result<i32> {
    anyhow::bail!("this build lacks burn's remote backend; rebuild with `--features remote`")
}
