//! How an agent is set up: the controller to attach to, its identity and share of load, its
//! TLS material, and the local addresses its connections leave from.

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The controller's gRPC address, e.g. `http://127.0.0.1:7600`.
    pub controller: String,
    /// Defaults to `<hostname>-<pid>`.
    pub agent_id: Option<String>,
    pub token: Option<String>,
    /// Relative share of load; defaults to the number of cores.
    pub weight: Option<f64>,
    /// At most this many connections (never more than the open-file limit allows).
    pub max_connections: Option<u64>,
    /// Worker threads (single-threaded runtimes) that run VUs; defaults to the cores.
    pub workers: usize,
    /// Exit when the controller goes away instead of reattaching (local agents of `wsfleet run`).
    pub once: bool,
    /// Overrides the protocol version sent in the hello (tests of refusal only).
    pub protocol_version: Option<u32>,
    /// TLS to the controller (use an `https://` controller URL).
    pub tls: Option<ClientTls>,
    /// Local addresses to spread connections over, round robin (each gives ~28k ports per
    /// destination); empty lets the kernel choose.
    pub source_addresses: Vec<std::net::IpAddr>,
}

/// Why a list of source addresses cannot be used (the text says how to write it).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum SourceAddressError {
    #[error("`{0}` is not an IPv4 range: write e.g. 127.0.0.2-127.0.0.9")]
    NotARange(String),
    #[error("`{0}` is not an ascending range of at most 65,536 addresses")]
    RangeTooWide(String),
    #[error("`{0}` is not an IP address")]
    NotAnAddress(String),
}

/// Parses `127.0.0.2-127.0.0.9` (an IPv4 range) or `10.0.0.5,10.0.0.6` (a list, ranges allowed).
pub fn parse_source_addresses(spec: &str) -> Result<Vec<std::net::IpAddr>, SourceAddressError> {
    let mut addresses = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (Ok(first), Ok(last)) = (
                    first.trim().parse::<std::net::Ipv4Addr>(),
                    last.trim().parse::<std::net::Ipv4Addr>(),
                ) else {
                    return Err(SourceAddressError::NotARange(part.to_owned()));
                };
                let (first, last) = (u32::from(first), u32::from(last));
                if first > last || last - first > 65_535 {
                    return Err(SourceAddressError::RangeTooWide(part.to_owned()));
                }
                addresses.extend((first..=last).map(|address| std::net::IpAddr::V4(address.into())));
            }
            None => addresses.push(
                part.parse()
                    .map_err(|_| SourceAddressError::NotAnAddress(part.to_owned()))?,
            ),
        }
    }
    Ok(addresses)
}

/// The agent's TLS material for the controller channel, PEM-encoded.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The CA that signed the controller's certificate.
    pub ca_pem: String,
    /// The agent's certificate and key, for controllers that require mutual TLS.
    pub identity: Option<(String, String)>,
    /// The name to verify in the controller's certificate (default: the URL's host).
    pub domain: Option<String>,
}

impl AgentConfig {
    pub fn new(controller: impl Into<String>) -> Self {
        AgentConfig {
            controller: controller.into(),
            agent_id: None,
            token: None,
            weight: None,
            max_connections: None,
            workers: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            once: false,
            protocol_version: None,
            tls: None,
            source_addresses: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_source_addresses;

    #[test]
    fn source_address_specs() {
        let range = parse_source_addresses("127.0.0.2-127.0.0.4").unwrap();
        assert_eq!(
            range.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        );
        assert_eq!(parse_source_addresses("10.0.0.1, ::1").unwrap().len(), 2);
        assert_eq!(
            parse_source_addresses("127.0.0.9-127.0.0.2").unwrap_err().to_string(),
            "`127.0.0.9-127.0.0.2` is not an ascending range of at most 65,536 addresses"
        );
        assert_eq!(
            parse_source_addresses("127.0.0.1-localhost").unwrap_err().to_string(),
            "`127.0.0.1-localhost` is not an IPv4 range: write e.g. 127.0.0.2-127.0.0.9"
        );
        assert_eq!(
            parse_source_addresses("localhost").unwrap_err().to_string(),
            "`localhost` is not an IP address"
        );
    }
}
