//! Which hosts a session may reach, checked in two steps (reference §A5 "Proxy policy"):
//!
//! 1. [`NetPolicy::check`] looks at the host name and port only, **before any DNS lookup**, so
//!    a denied name is never resolved (a DNS query is itself a way to leak data).
//! 2. [`Target::resolve`] resolves an allowed name and refuses it when any of its addresses
//!    is loopback, private, link-local, CGNAT, unique-local or a cloud metadata address. The
//!    caller then connects to exactly those checked addresses (pinning): there is no second
//!    lookup that DNS rebinding could answer differently.
//!
//! IP literals are refused in `limited` mode unless they are listed themselves; a listed
//! literal is the one way to reach a private or loopback address on purpose.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// Registry hosts `allow_package_managers` adds (ports 80 and 443).
pub const PACKAGE_MANAGER_HOSTS: &[&str] = &[
    // pip
    "pypi.org",
    "files.pythonhosted.org",
    // npm / yarn
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    // cargo
    "crates.io",
    "static.crates.io",
    "index.crates.io",
    // go
    "proxy.golang.org",
    "sum.golang.org",
    // gem
    "rubygems.org",
    "index.rubygems.org",
    // apt
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "ports.ubuntu.com",
];

/// Ports a host entry without `:port` allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// The network rules of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetPolicy {
    /// No network at all.
    None,
    /// Only the listed hosts.
    Limited(AllowList),
    /// Any public host; loopback, private and metadata addresses stay refused.
    Unrestricted,
}

/// The hosts of a `limited` policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    entries: Vec<HostRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    pattern: HostPattern,
    /// `None`: [`DEFAULT_PORTS`].
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `example.com`: exactly that name.
    Exact(String),
    /// `*.example.com`: any name below `example.com`, not `example.com` itself.
    Subdomains(String),
    /// `10.0.0.5` or `[::1]`: that address, never a name.
    Ip(IpAddr),
}

/// An `allowed_hosts` entry that can't be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "allowed_hosts entry `{entry}` is not valid: {why}; write a host name (`example.com`), \
     a wildcard for its subdomains (`*.example.com`) or an IP address, each optionally with \
     `:port` (without a port, 80 and 443 are allowed)"
)]
pub struct PolicyError {
    pub entry: String,
    pub why: String,
}

/// Why a connection was refused; the text says which rule refused and how to allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "networking is off for this session (networking: none), so `{host}` can't be reached; \
         give the session limited networking with `{host}` in allowed_hosts, or unrestricted \
         networking"
    )]
    NetworkingOff { host: String },
    #[error("`{host}` is not a valid host name")]
    BadHost { host: String },
    #[error(
        "`{host}` is not in this session's allowed_hosts (networking: limited); add `{host}` \
         to allowed_hosts (or `*.{parent}` for all its subdomains) to allow it"
    )]
    NotListed { host: String, parent: String },
    #[error(
        "`{host}` is allowed only on ports {allowed}, not {port}; add `{host}:{port}` to \
         allowed_hosts to allow port {port}"
    )]
    PortNotAllowed {
        host: String,
        port: u16,
        allowed: String,
    },
    #[error(
        "`{host}` is an IP address, and limited networking only reaches IP addresses listed in \
         allowed_hosts; use the host name, or add `{host}:{port}` to allowed_hosts"
    )]
    IpNotListed { host: String, port: u16 },
    #[error(
        "`{host}` is {what}; tether never connects to loopback, private, link-local or \
         cloud-metadata addresses unless the address itself is listed in allowed_hosts \
         (they reach the host's own services)"
    )]
    PrivateAddress { host: String, what: String },
    #[error(
        "`{host}` resolves to {addr}, {what}; tether refuses host names that lead to loopback, \
         private, link-local or cloud-metadata addresses (they reach the host's own services); \
         list the address itself in allowed_hosts if you really mean it"
    )]
    ResolvesPrivate {
        host: String,
        addr: IpAddr,
        what: String,
    },
    #[error("could not resolve `{host}`: {error}")]
    Dns { host: String, error: String },
}

/// A host and port that passed [`NetPolicy::check`], not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Lower-case, without brackets or a trailing dot.
    pub host: String,
    pub port: u16,
    ip: Option<IpAddr>,
}

/// Resolves host names; behind a trait so tests can see that a denied name was never looked up.
pub trait Resolver: Send + Sync {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>>;
}

/// The system resolver (getaddrinfo on the blocking pool).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// The resolver the daemon uses.
pub fn system_resolver() -> Arc<dyn Resolver> {
    Arc::new(SystemResolver)
}

impl NetPolicy {
    /// A `limited` policy from an environment's `allowed_hosts` and `allow_package_managers`.
    pub fn limited(
        allowed_hosts: &[String],
        allow_package_managers: bool,
    ) -> Result<NetPolicy, PolicyError> {
        let mut entries = allowed_hosts
            .iter()
            .map(|e| HostRule::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        if allow_package_managers {
            entries.extend(PACKAGE_MANAGER_HOSTS.iter().map(|h| HostRule {
                pattern: HostPattern::Exact((*h).to_string()),
                port: None,
            }));
        }
        Ok(NetPolicy::Limited(AllowList { entries }))
    }

    /// `allow_mcp_servers`: a `limited` policy also reaches the `host:port` of each MCP
    /// server URL (exactly that port). A private or loopback IP literal is not added: an
    /// agent's URL can't lift the SSRF rules, only the environment listing the address can.
    /// Other policies are returned as they are.
    pub fn with_mcp_urls(self, urls: &[&str]) -> NetPolicy {
        let NetPolicy::Limited(mut list) = self else {
            return self;
        };
        for raw in urls {
            let Ok(url) = reqwest::Url::parse(raw) else {
                continue;
            };
            let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
                continue;
            };
            let Ok(host) = normalize_host(host) else {
                continue;
            };
            let pattern = match host.parse::<IpAddr>() {
                Ok(ip) if forbidden(ip).is_some() => continue,
                Ok(ip) => HostPattern::Ip(ip),
                Err(_) => HostPattern::Exact(host),
            };
            list.entries.push(HostRule {
                pattern,
                port: Some(port),
            });
        }
        NetPolicy::Limited(list)
    }

    /// Whether sessions under this policy can reach anything at all.
    pub fn is_none(&self) -> bool {
        matches!(self, NetPolicy::None)
    }

    /// Checks `host:port` without resolving anything. `host` may be a name, an IPv4 address
    /// or an IPv6 address with or without brackets.
    pub fn check(&self, host: &str, port: u16) -> Result<Target, Refusal> {
        let host = normalize_host(host)?;
        let ip = host.parse::<IpAddr>().ok();
        let target = Target {
            host: host.clone(),
            port,
            ip,
        };
        match self {
            NetPolicy::None => Err(Refusal::NetworkingOff { host }),
            NetPolicy::Unrestricted => match ip.and_then(|ip| forbidden(ip).map(|w| (ip, w))) {
                Some((_, what)) => Err(Refusal::PrivateAddress { host, what }),
                None => Ok(target),
            },
            NetPolicy::Limited(list) => {
                if let Some(ip) = ip {
                    return if list.entries.iter().any(|r| r.matches_ip(ip, port)) {
                        Ok(target)
                    } else {
                        Err(Refusal::IpNotListed { host, port })
                    };
                }
                let by_name: Vec<&HostRule> = list
                    .entries
                    .iter()
                    .filter(|r| r.pattern.matches_name(&host))
                    .collect();
                if by_name.iter().any(|r| r.allows_port(port)) {
                    return Ok(target);
                }
                if by_name.is_empty() {
                    let parent = host.split_once('.').map_or(host.as_str(), |(_, p)| p);
                    return Err(Refusal::NotListed {
                        parent: parent.to_string(),
                        host,
                    });
                }
                let mut ports: Vec<u16> = by_name
                    .iter()
                    .flat_map(|r| r.port.map_or(DEFAULT_PORTS.to_vec(), |p| vec![p]))
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                let allowed = ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ");
                Err(Refusal::PortNotAllowed {
                    host,
                    port,
                    allowed,
                })
            }
        }
    }
}

impl Target {
    /// The addresses to connect to: a listed IP literal as it is, a name through `resolver`,
    /// refused when any address it resolves to is not public. Connect to these and nothing else.
    pub async fn resolve(&self, resolver: &dyn Resolver) -> Result<Vec<SocketAddr>, Refusal> {
        if let Some(ip) = self.ip {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs = resolver
            .lookup(&self.host, self.port)
            .await
            .map_err(|e| Refusal::Dns {
                host: self.host.clone(),
                error: e.to_string(),
            })?;
        if addrs.is_empty() {
            return Err(Refusal::Dns {
                host: self.host.clone(),
                error: "no addresses".into(),
            });
        }
        for a in &addrs {
            if let Some(what) = forbidden(a.ip()) {
                return Err(Refusal::ResolvesPrivate {
                    host: self.host.clone(),
                    addr: a.ip(),
                    what,
                });
            }
        }
        // The port asked for, whatever the resolver put there.
        Ok(addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip(), self.port))
            .collect())
    }
}

impl HostRule {
    fn parse(entry: &str) -> Result<HostRule, PolicyError> {
        let bad = |why: &str| PolicyError {
            entry: entry.to_string(),
            why: why.to_string(),
        };
        let mut rest = entry.trim();
        for scheme in ["https://", "http://"] {
            if let Some(r) = rest.strip_prefix(scheme) {
                rest = r;
            }
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        if rest.contains('/') {
            return Err(bad("it has a path; list only the host"));
        }
        // `[v6]:port`, `v6` (several colons, no brackets), `host:port`, `host`.
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("a `[` without its `]`"))?;
            match after {
                "" => (addr, None),
                p => (
                    addr,
                    Some(p.strip_prefix(':').ok_or_else(|| bad("junk after `]`"))?),
                ),
            }
        } else if rest.matches(':').count() > 1 {
            (rest, None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(bad("the port is not a number from 1 to 65535")),
                Ok(p) => Some(p),
            },
        };
        let pattern = if let Ok(ip) = host.parse::<IpAddr>() {
            HostPattern::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            let suffix = normalize_host(suffix).map_err(|_| bad("not a host name after `*.`"))?;
            if !suffix.contains('.') {
                return Err(bad(
                    "a wildcard needs at least two labels, like `*.example.com`",
                ));
            }
            HostPattern::Subdomains(suffix)
        } else {
            if host.contains('*') {
                return Err(bad(
                    "`*` is only allowed as a whole first label, like `*.example.com`",
                ));
            }
            HostPattern::Exact(normalize_host(host).map_err(|_| bad("not a host name"))?)
        };
        Ok(HostRule { pattern, port })
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        }
    }

    fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        matches!(self.pattern, HostPattern::Ip(listed) if canonical(listed) == canonical(ip))
            && self.allows_port(port)
    }
}

impl HostPattern {
    fn matches_name(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => name == host,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            HostPattern::Ip(_) => false,
        }
    }
}

/// Lower-case, brackets and one trailing dot removed; only letters, digits, `-`, `_`, `.`
/// (or an IP address).
fn normalize_host(host: &str) -> Result<String, Refusal> {
    let bad = || Refusal::BadHost {
        host: host.to_string(),
    };
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(canonical(ip).to_string());
    }
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let valid = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid { Ok(h) } else { Err(bad()) }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn forbidden(ip: IpAddr) -> Option<String> {
    match canonical(ip) {
        IpAddr::V4(v4) => forbidden_v4(v4).map(String::from),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "the cloud metadata address",
        (0, _, _) => "an unspecified (0.0.0.0/8) address",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (192, 168, _) => "a private address",
        (169, 254, _) => "a link-local address",
        (100, 64..=127, _) => "a shared (CGNAT) address",
        (192, 0, 0) => "an IETF protocol address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<String> {
    let seg = ip.segments();
    let what = match seg[0] {
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => {
            "the cloud metadata address"
        }
        _ if ip.is_loopback() => "a loopback address",
        _ if ip.is_unspecified() => "the unspecified address",
        s if s & 0xfe00 == 0xfc00 => "a unique-local address",
        s if s & 0xffc0 == 0xfe80 => "a link-local address",
        s if s & 0xff00 == 0xff00 => "a multicast address",
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address that decides.
        0x64 if seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] => {
            let v4 = Ipv4Addr::new(
                (seg[6] >> 8) as u8,
                seg[6] as u8,
                (seg[7] >> 8) as u8,
                seg[7] as u8,
            );
            return forbidden_v4(v4).map(|w| format!("{w} (through NAT64)"));
        }
        0x2002 => {
            let v4 = Ipv4Addr::new(
                (seg[1] >> 8) as u8,
                seg[1] as u8,
                (seg[2] >> 8) as u8,
                seg[2] as u8,
            );
            return forbidden_v4(v4).map(|w| format!("{w} (through 6to4)"));
        }
        _ => return None,
    };
    Some(what.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A resolver answering from a table and remembering every name it was asked.
    #[derive(Default)]
    pub(crate) struct FakeResolver {
        pub answers: HashMap<String, Vec<IpAddr>>,
        pub asked: Mutex<Vec<String>>,
    }

    impl FakeResolver {
        pub fn with(pairs: &[(&str, &str)]) -> FakeResolver {
            let mut answers: HashMap<String, Vec<IpAddr>> = HashMap::new();
            for (name, ip) in pairs {
                answers
                    .entry((*name).to_string())
                    .or_default()
                    .push(ip.parse().unwrap());
            }
            FakeResolver {
                answers,
                asked: Mutex::default(),
            }
        }

        pub fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Resolver for FakeResolver {
        fn lookup<'a>(
            &'a self,
            host: &'a str,
            port: u16,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>> {
            self.asked.lock().unwrap().push(host.to_string());
            let found = self.answers.get(host).cloned();
            Box::pin(async move {
                match found {
                    Some(ips) => Ok(ips
                        .into_iter()
                        .map(|ip| SocketAddr::new(ip, port))
                        .collect()),
                    None => Err(std::io::Error::other("no such host")),
                }
            })
        }
    }

    fn limited(hosts: &[&str]) -> NetPolicy {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        NetPolicy::limited(&hosts, false).unwrap()
    }

    #[test]
    fn exact_hosts_allow_the_default_ports_only() {
        let p = limited(&["example.com"]);
        assert!(p.check("example.com", 443).is_ok());
        assert!(p.check("EXAMPLE.com.", 80).is_ok());
        let e = p.check("example.com", 8080).unwrap_err();
        assert!(matches!(e, Refusal::PortNotAllowed { .. }), "{e}");
        assert!(e.to_string().contains("add `example.com:8080`"), "{e}");
        // Lookalikes are other names.
        for host in [
            "www.example.com",
            "example.com.evil.net",
            "xexample.com",
            "example.co",
        ] {
            let e = p.check(host, 443).unwrap_err();
            assert!(matches!(e, Refusal::NotListed { .. }), "{host}: {e}");
        }
    }

    #[test]
    fn wildcards_match_subdomains_but_not_the_domain_itself() {
        let p = limited(&["*.github.com", "api.example.com:8443"]);
        assert!(p.check("api.github.com", 443).is_ok());
        assert!(p.check("a.b.github.com", 80).is_ok());
        assert!(p.check("github.com", 443).is_err());
        assert!(p.check("evilgithub.com", 443).is_err());
        assert!(p.check("api.example.com", 8443).is_ok());
        assert!(p.check("api.example.com", 443).is_err());
    }

    #[test]
    fn ip_literals_are_refused_unless_listed() {
        let p = limited(&["example.com", "127.0.0.1:8080", "[::1]:9000"]);
        let e = p.check("93.184.216.34", 80).unwrap_err();
        assert!(matches!(e, Refusal::IpNotListed { .. }), "{e}");
        assert!(e.to_string().contains("add `93.184.216.34:80`"), "{e}");
        assert!(p.check("127.0.0.1", 8080).is_ok());
        assert!(p.check("127.0.0.1", 8081).is_err());
        assert!(p.check("[::1]", 9000).is_ok());
        assert!(
            p.check("::ffff:127.0.0.1", 8080).is_ok(),
            "mapped form is the same address"
        );
        assert!(p.check("::1", 8080).is_err());
    }

    #[test]
    fn bad_entries_and_hosts_are_explained() {
        for entry in [
            "",
            "example.com:0",
            "example.com:http",
            "*.com",
            "a*.example.com",
            "x.com/path",
        ] {
            let e = NetPolicy::limited(&[entry.to_string()], false).unwrap_err();
            assert!(e.to_string().contains("allowed_hosts entry"), "{e}");
        }
        let p = limited(&["https://example.com/"]);
        assert!(
            p.check("example.com", 443).is_ok(),
            "a scheme and trailing slash are tolerated"
        );
        assert!(matches!(
            p.check("exa mple.com", 443),
            Err(Refusal::BadHost { .. })
        ));
    }

    #[test]
    fn package_managers_add_registry_hosts() {
        let none: Vec<String> = Vec::new();
        let p = NetPolicy::limited(&none, true).unwrap();
        for host in [
            "pypi.org",
            "files.pythonhosted.org",
            "registry.npmjs.org",
            "static.crates.io",
            "deb.debian.org",
        ] {
            assert!(p.check(host, 443).is_ok(), "{host}");
        }
        assert!(p.check("example.com", 443).is_err());
        assert!(
            NetPolicy::limited(&none, false)
                .unwrap()
                .check("pypi.org", 443)
                .is_err()
        );
    }

    #[test]
    fn mcp_servers_add_their_host_and_port_but_never_a_private_literal() {
        let p = limited(&["example.com"]).with_mcp_urls(&[
            "https://mcp.example.org/mcp",
            "http://tools.example.net:8931/mcp",
            "http://127.0.0.1:9000/mcp",
            "http://8.8.8.8:7000/",
            "not a url",
        ]);
        assert!(p.check("mcp.example.org", 443).is_ok());
        assert!(
            p.check("mcp.example.org", 80).is_err(),
            "only the URL's own port"
        );
        assert!(p.check("tools.example.net", 8931).is_ok());
        assert!(p.check("8.8.8.8", 7000).is_ok());
        let e = p.check("127.0.0.1", 9000).unwrap_err();
        assert!(matches!(e, Refusal::IpNotListed { .. }), "{e}");
        assert!(p.check("example.com", 443).is_ok(), "the listed hosts stay");
        // Other policies are not widened (nor narrowed).
        assert_eq!(
            NetPolicy::None.with_mcp_urls(&["https://mcp.example.org/"]),
            NetPolicy::None
        );
        assert_eq!(
            NetPolicy::Unrestricted.with_mcp_urls(&["https://mcp.example.org/"]),
            NetPolicy::Unrestricted
        );
    }

    #[test]
    fn no_networking_refuses_everything() {
        let e = NetPolicy::None.check("example.com", 443).unwrap_err();
        assert!(e.to_string().contains("networking: none"), "{e}");
    }

    #[test]
    fn unrestricted_refuses_private_literals() {
        let p = NetPolicy::Unrestricted;
        assert!(p.check("example.com", 22).is_ok());
        assert!(p.check("1.1.1.1", 443).is_ok());
        for host in [
            "127.0.0.1",
            "10.1.2.3",
            "169.254.169.254",
            "[fd00:ec2::254]",
            "::ffff:192.168.0.1",
            "100.64.0.1",
            "0.0.0.0",
        ] {
            let e = p.check(host, 80).unwrap_err();
            assert!(matches!(e, Refusal::PrivateAddress { .. }), "{host}: {e}");
        }
    }

    #[test]
    fn address_classes() {
        for (ip, what) in [
            ("127.0.0.1", "loopback"),
            ("10.0.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "metadata"),
            ("169.254.1.1", "link-local"),
            ("100.100.100.200", "CGNAT"),
            ("::1", "loopback"),
            ("fd00:ec2::254", "metadata"),
            ("fd12::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("64:ff9b::a00:1", "NAT64"),
            ("2002:7f00:1::", "6to4"),
        ] {
            let got = forbidden(ip.parse().unwrap());
            assert!(
                got.as_deref().is_some_and(|g| g.contains(what)),
                "{ip}: {got:?}"
            );
        }
        for ip in ["1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert_eq!(forbidden(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let r = FakeResolver::with(&[
            ("public.test", "93.184.216.34"),
            ("internal.test", "10.0.0.7"),
            ("mixed.test", "93.184.216.34"),
            ("mixed.test", "127.0.0.1"),
            ("meta.test", "169.254.169.254"),
        ]);
        let p = limited(&[
            "public.test",
            "internal.test",
            "mixed.test",
            "meta.test",
            "missing.test",
        ]);
        let addrs = p
            .check("public.test", 443)
            .unwrap()
            .resolve(&r)
            .await
            .unwrap();
        assert_eq!(addrs, vec!["93.184.216.34:443".parse().unwrap()]);
        for host in ["internal.test", "mixed.test", "meta.test"] {
            let e = p.check(host, 443).unwrap().resolve(&r).await.unwrap_err();
            assert!(matches!(e, Refusal::ResolvesPrivate { .. }), "{host}: {e}");
        }
        assert!(matches!(
            p.check("missing.test", 443).unwrap().resolve(&r).await,
            Err(Refusal::Dns { .. })
        ));
    }

    #[tokio::test]
    async fn listed_literals_are_not_resolved() {
        let r = FakeResolver::default();
        let p = limited(&["127.0.0.1:8080"]);
        let addrs = p
            .check("127.0.0.1", 8080)
            .unwrap()
            .resolve(&r)
            .await
            .unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert!(r.asked().is_empty());
    }
}
