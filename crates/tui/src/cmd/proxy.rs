//! `tether proxy`: bridges stdin/stdout to the local daemon's socket, byte for byte, so that
//! `ssh host tether proxy` is a transport for a client on another machine. It starts the daemon
//! if none runs (unless `--existing`) and exits when either side closes.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::ExitCode;

use super::CmdResult;
use crate::client::{self, ClientError};
use crate::transport::connect_local;

pub async fn run(start: bool) -> CmdResult {
    let paths = client::paths();
    let socket = connect_local(&paths, start)
        .await?
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|e| ClientError::Unreachable(format!("cannot use the daemon socket: {e}")))?;
    let upstream = socket
        .try_clone()
        .map_err(|e| ClientError::Unreachable(format!("cannot use the daemon socket: {e}")))?;
    // stdin → daemon on its own thread; at EOF, tell the daemon we are done sending.
    std::thread::spawn(move || {
        let mut up = &upstream;
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut up);
        let _ = upstream.shutdown(Shutdown::Write);
    });
    // daemon → stdout here, flushed as it arrives; the daemon closing ends the proxy.
    let mut down = &socket;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
