//! The in-sandbox half of `limited` networking: `tetherd sandbox-bridge SOCKET` gets its
//! listening socket (127.0.0.1:[`PORT`] in the sandbox's network namespace) on stdin from the
//! sandbox init and splices every connection to the host proxy's Unix socket, which is
//! bind-mounted at [`SOCKET_IN_SANDBOX`]. The namespace has no other interface than loopback,
//! so this is the only way out; if the proxy is gone the bridge answers 502 and nothing leaves.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// The hidden subcommand the sandbox init starts the bridge as.
pub const SUBCOMMAND: &str = "sandbox-bridge";
/// The port the bridge listens on inside the sandbox (the usual proxy port).
pub const PORT: u16 = 3128;
/// Where the proxy socket is mounted inside the sandbox.
pub const SOCKET_IN_SANDBOX: &str = "/run/tether/proxy.sock";

/// The proxy variables the sandboxed shell gets; `NO_PROXY` empty so nothing bypasses it.
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{PORT}");
    let mut env: Vec<(&'static str, String)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "npm_config_proxy",
        "npm_config_https_proxy",
        "PIP_PROXY",
    ]
    .into_iter()
    .map(|k| (k, url.clone()))
    .collect();
    env.push(("NO_PROXY", String::new()));
    env.push(("no_proxy", String::new()));
    env
}

/// `tetherd sandbox-bridge SOCKET`, with the listening TCP socket as stdin.
pub fn main(args: &[OsString]) -> ExitCode {
    let fail = |why: String| {
        let _ = writeln!(std::io::stderr(), "tether sandbox bridge: {why}");
        ExitCode::FAILURE
    };
    let [socket] = args else {
        return fail("usage: tetherd sandbox-bridge SOCKET (listening socket on stdin)".into());
    };
    let listener = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => std::net::TcpListener::from(fd),
        Err(e) => return fail(format!("no listening socket on stdin: {e}")),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    match rt.block_on(run(listener, PathBuf::from(socket))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("stopped: {e}")),
    }
}

/// Accepts on `listener` forever, splicing each connection to the Unix socket at `socket`.
pub async fn run(listener: std::net::TcpListener, socket: PathBuf) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let socket = socket.clone();
        tokio::spawn(splice(tcp, socket));
    }
}

async fn splice(mut tcp: tokio::net::TcpStream, socket: PathBuf) {
    match UnixStream::connect(&socket).await {
        Ok(mut unix) => {
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
        }
        // Fail closed, with a reason the client can show.
        Err(e) => {
            let _ = tcp
                .write_all(unreachable_answer(&socket, &e).as_bytes())
                .await;
            let _ = tcp.shutdown().await;
        }
    }
}

fn unreachable_answer(socket: &Path, e: &std::io::Error) -> String {
    let body = format!(
        "tether sandbox: the session's network proxy is not reachable at {} ({e}); no \
         traffic leaves the sandbox without it. Restart the shell (bash with restart: true) to \
         start a new proxy.\n",
        socket.display()
    );
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Brings up the loopback interface of the sandbox's (fresh, empty) network namespace and
/// listens on
/// 127.0.0.1:[`PORT`].
pub fn listen() -> Result<std::net::TcpListener, String> {
    loopback_up()?;
    std::net::TcpListener::bind(("127.0.0.1", PORT))
        .map_err(|e| format!("listen on 127.0.0.1:{PORT} for the network proxy: {e}"))
}

/// `ip link set lo up`, as one RTM_NEWLINK netlink request (no iproute2 needed).
fn loopback_up() -> Result<(), String> {
    use nix::libc;
    use nix::sys::socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        socket,
    };
    use std::os::fd::AsRawFd;
    let index = nix::net::if_::if_nametoindex("lo")
        .map_err(|e| format!("find the loopback interface: {e}"))?;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )
    .map_err(|e| format!("open a netlink socket: {e}"))?;
    // struct nlmsghdr (16 bytes) + struct ifinfomsg (16 bytes), native byte order.
    let mut msg = Vec::with_capacity(32);
    msg.extend_from_slice(&32u32.to_ne_bytes());
    msg.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    msg.push(libc::AF_UNSPEC as u8);
    msg.push(0);
    msg.extend_from_slice(&0u16.to_ne_bytes()); // device type
    msg.extend_from_slice(&(index as i32).to_ne_bytes());
    msg.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes()); // flags
    msg.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes()); // change mask
    sendto(
        fd.as_raw_fd(),
        &msg,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(|e| format!("bring up the loopback interface: {e}"))?;
    let mut reply = [0u8; 512];
    let n = recv(fd.as_raw_fd(), &mut reply, MsgFlags::empty())
        .map_err(|e| format!("read the loopback interface's answer: {e}"))?;
    // The acknowledgement is an NLMSG_ERROR message whose error is 0.
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    let error = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if n < 20 || kind != libc::NLMSG_ERROR as u16 {
        return Err("bring up the loopback interface: unexpected netlink answer".into());
    }
    if error != 0 {
        let e = nix::errno::Errno::from_raw(-error);
        return Err(format!("bring up the loopback interface: {e}"));
    }
    Ok(())
}

/// Starts `tetherd sandbox-bridge` with `listener` as its stdin (from the sandbox init).
/// Called after the privileges are dropped, so the bridge has no more power than the shell; it runs this very binary
/// through `/proc/self/exe` (the host path is not mounted in the sandbox).
pub fn spawn(listener: std::net::TcpListener) -> Result<(), String> {
    std::process::Command::new("/proc/self/exe")
        .arg(SUBCOMMAND)
        .arg(SOCKET_IN_SANDBOX)
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(
            listener,
        )))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("start the network proxy bridge: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn bridge_to(socket: PathBuf) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(run(listener, socket));
        addr
    }

    #[tokio::test]
    async fn splices_to_the_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let unix = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut c, _) = unix.accept().await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            c.write_all(&buf).await.unwrap();
            c.write_all(b" back").await.unwrap();
        });
        let mut tcp = tokio::net::TcpStream::connect(bridge_to(path).await)
            .await
            .unwrap();
        tcp.write_all(b"hello").await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello back");
    }

    #[tokio::test]
    async fn a_missing_proxy_fails_closed_with_a_502() {
        let dir = tempfile::tempdir().unwrap();
        let mut tcp = tokio::net::TcpStream::connect(bridge_to(dir.path().join("gone.sock")).await)
            .await
            .unwrap();
        tcp.write_all(b"GET http://example.com/ HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 502 "), "{out}");
        assert!(out.contains("network proxy is not reachable"), "{out}");
    }

    #[test]
    fn every_proxy_variable_points_at_the_bridge() {
        let env = proxy_env();
        for key in ["HTTP_PROXY", "https_proxy", "ALL_PROXY"] {
            assert!(
                env.contains(&(key, "http://127.0.0.1:3128".to_string())),
                "{key}"
            );
        }
        assert!(env.contains(&("NO_PROXY", String::new())));
    }
}
