//! Exposed safely by default: a controller that listens beyond this host (any address that is not
//! loopback: 127.0.0.0/8, ::1) must ask who is calling. Its HTTP API then needs an API token and
//! its agents' channel an agent token (or mutual TLS), unless an `insecure_no_*` setting says the
//! operator wants it open. The check runs on the configured addresses before anything is bound,
//! so a refused controller has listened nowhere.

use std::net::{IpAddr, SocketAddr};

/// How far an address that resolves to `addresses` reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Only this host: every address is loopback.
    ThisHost,
    /// Other hosts may connect: one address at least is not loopback (`0.0.0.0`, `::`, a
    /// routable address).
    Network,
}

/// Whether `ip` is reachable only from this host. An IPv4-mapped IPv6 address counts as its
/// IPv4 address (`::ffff:127.0.0.1` is loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// The reach of a listener bound to one of `addresses`: a host name that resolves to loopback
/// and to another address counts as reaching the network, whichever one `bind` would take.
pub fn reach(addresses: &[SocketAddr]) -> Reach {
    if !addresses.is_empty() && addresses.iter().all(|address| is_loopback(address.ip())) {
        Reach::ThisHost
    } else {
        Reach::Network
    }
}

/// Resolves a listen address as `bind` would (`HOST:PORT`, `IP:PORT`, `[IPv6]:PORT`) and says
/// how far it reaches. An address that does not resolve is left for `bind` to refuse with its
/// own message.
pub async fn reach_of(address: &str) -> Reach {
    match tokio::net::lookup_host(address).await {
        Ok(addresses) => reach(&addresses.collect::<Vec<_>>()),
        Err(_) => Reach::ThisHost,
    }
}

/// One listener the controller is about to open, and what protects it.
pub struct Listener<'a> {
    /// Where it will listen, as configured.
    pub address: &'a str,
    pub reach: Reach,
    /// A token (or mutual TLS, for agents) is required of callers.
    pub guarded: bool,
    /// The operator said it may be open (`--insecure-no-*`).
    pub open_on_purpose: bool,
}

impl Listener<'_> {
    fn refused(&self) -> bool {
        self.reach == Reach::Network && !self.guarded && !self.open_on_purpose
    }
}

/// Why the controller refuses to start: one line per listener that would be open to the network.
#[derive(Debug, PartialEq, Eq)]
pub struct Exposed {
    pub problems: Vec<String>,
}

impl std::fmt::Display for Exposed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One problem a line; `error: ` precedes the first.
        formatter.write_str(&self.problems.join("\nerror: "))
    }
}

/// Refuses a gRPC channel for agents (`agents`, absent for `wsfleet run`, whose agents are its
/// own on loopback) or HTTP endpoints (`http`) that would listen beyond this host unguarded.
pub fn check(agents: Option<&Listener<'_>>, http: &Listener<'_>) -> Result<(), Exposed> {
    let mut problems = Vec::new();
    if let Some(agents) = agents.filter(|agents| agents.refused()) {
        problems.push(format!(
            "refusing to accept agents on {}, which is not a loopback address, without an agent token: \
             set one with `--token TOKEN` (`controller.token`, WSFLEET_CONTROLLER__TOKEN) and give agents \
             the same, require client certificates with `--client-ca`, or add `--insecure-no-agent-token` \
             to let any agent attach",
            agents.address
        ));
    }
    if http.refused() {
        problems.push(format!(
            "refusing to serve the dashboard and /api on {}, which is not a loopback address, without \
             an API token: set one with `--api-token TOKEN` (`controller.api_token`, \
             WSFLEET_CONTROLLER__API_TOKEN), or add `--insecure-no-api-token` to serve them open",
            http.address
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Exposed { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|text| text.parse().expect("a socket address"))
            .collect()
    }

    #[test]
    fn loopback_is_the_whole_of_127_0_0_0_8_and_ipv6_one() {
        for ip in ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().expect("an ip")), "{ip}");
        }
        for ip in [
            "0.0.0.0",
            "::",
            "10.0.0.5",
            "192.168.1.1",
            "128.0.0.1",
            "::2",
            "::ffff:10.0.0.1",
            "fe80::1",
        ] {
            assert!(!is_loopback(ip.parse().expect("an ip")), "{ip}");
        }
    }

    #[test]
    fn an_address_reaches_the_network_when_any_of_its_resolutions_does() {
        assert_eq!(reach(&addresses(&["127.0.0.1:0"])), Reach::ThisHost);
        assert_eq!(reach(&addresses(&["127.0.0.1:7601", "[::1]:7601"])), Reach::ThisHost);
        assert_eq!(reach(&addresses(&["0.0.0.0:0"])), Reach::Network);
        assert_eq!(reach(&addresses(&["[::]:7600"])), Reach::Network);
        assert_eq!(reach(&addresses(&["127.0.0.1:7600", "10.0.0.5:7600"])), Reach::Network);
        assert_eq!(reach(&[]), Reach::Network);
    }

    #[tokio::test]
    async fn listen_addresses_are_resolved_as_bind_would() {
        assert_eq!(reach_of("127.0.0.1:0").await, Reach::ThisHost);
        assert_eq!(reach_of("[::1]:7600").await, Reach::ThisHost);
        assert_eq!(reach_of("localhost:7601").await, Reach::ThisHost);
        assert_eq!(reach_of("0.0.0.0:0").await, Reach::Network);
        assert_eq!(reach_of("[::]:0").await, Reach::Network);
    }

    fn listener(address: &str, reach: Reach, guarded: bool, open_on_purpose: bool) -> Listener<'_> {
        Listener {
            address,
            reach,
            guarded,
            open_on_purpose,
        }
    }

    #[test]
    fn only_an_unguarded_listener_on_the_network_is_refused() {
        let loopback = listener("127.0.0.1:7601", Reach::ThisHost, false, false);
        assert_eq!(
            check(
                Some(&listener("127.0.0.1:7600", Reach::ThisHost, false, false)),
                &loopback
            ),
            Ok(())
        );
        assert_eq!(
            check(Some(&listener("0.0.0.0:7600", Reach::Network, true, false)), &loopback),
            Ok(())
        );
        assert_eq!(
            check(Some(&listener("0.0.0.0:7600", Reach::Network, false, true)), &loopback),
            Ok(())
        );
        assert_eq!(
            check(None, &listener("0.0.0.0:7601", Reach::Network, true, false)),
            Ok(())
        );
        assert_eq!(
            check(None, &listener("0.0.0.0:7601", Reach::Network, false, true)),
            Ok(())
        );

        let refused = check(Some(&listener("0.0.0.0:7600", Reach::Network, false, false)), &loopback)
            .expect_err("open agents' channel");
        assert_eq!(refused.problems.len(), 1);
        assert!(refused.problems[0].contains("agents on 0.0.0.0:7600"), "{refused}");
        assert!(refused.problems[0].contains("--insecure-no-agent-token"), "{refused}");
        assert!(refused.problems[0].contains("--token TOKEN"), "{refused}");

        let both = check(
            Some(&listener("[::]:7600", Reach::Network, false, false)),
            &listener("0.0.0.0:7601", Reach::Network, false, false),
        )
        .expect_err("both open");
        assert_eq!(both.problems.len(), 2);
        assert!(both.problems[1].contains("/api on 0.0.0.0:7601"), "{both}");
        assert!(both.problems[1].contains("--insecure-no-api-token"), "{both}");
        assert!(both.problems[1].contains("--api-token TOKEN"), "{both}");
        assert_eq!(both.to_string().lines().count(), 2);
        assert!(both
            .to_string()
            .lines()
            .nth(1)
            .is_some_and(|line| line.starts_with("error: refusing")));
    }
}
