//! Which origins a function may send `wasi:http` requests to: the services endpoint and
//! the hosts its manifest lists, matched on scheme, host and port.

use std::fmt;

/// An HTTP origin: scheme, host (lower case, IPv6 in brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `http://host[:port][/...]` or `https://...`; the path, if any, is ignored.
    pub(crate) fn parse(url: &str) -> Option<Origin> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return None;
        }
        Origin::from_authority(https, authority)
    }

    /// The origin of `authority` (`host[:port]`) under a scheme.
    pub(crate) fn from_authority(https: bool, authority: &str) -> Option<Origin> {
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().ok()?,
                None if after.is_empty() => default_port,
                None => return None,
            };
            (format!("[{}]", host.to_ascii_lowercase()), port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_ascii_lowercase(), port.parse().ok()?),
                None => (authority.to_ascii_lowercase(), default_port),
            }
        };
        let host = host.trim_end_matches('.').to_owned();
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return None;
        }
        Some(Origin { https, host, port })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The origins one function may reach.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutboundPolicy {
    allowed: Vec<Origin>,
}

impl OutboundPolicy {
    /// The services endpoint plus `hosts` (entries that do not parse allow nothing, so a
    /// typo denies rather than opens).
    pub(crate) fn new(services: Option<&Origin>, hosts: &[String]) -> OutboundPolicy {
        let mut allowed: Vec<Origin> = services.into_iter().cloned().collect();
        allowed.extend(hosts.iter().filter_map(|h| Origin::parse(h)));
        OutboundPolicy { allowed }
    }

    /// Whether a request to `uri` may leave.
    pub(crate) fn allows(&self, uri: &http::Uri) -> bool {
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return false,
        };
        let Some(authority) = uri.authority() else {
            return false;
        };
        if authority.as_str().contains('@') {
            return false;
        }
        Origin::from_authority(https, authority.as_str())
            .is_some_and(|origin| self.allowed.contains(&origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutboundPolicy {
        OutboundPolicy::new(
            Origin::parse("http://127.0.0.1:4566").as_ref(),
            &[
                "https://api.example.com".to_owned(),
                "http://LOCALHOST:8080/".to_owned(),
                "https://[::1]:8443".to_owned(),
                "not a url".to_owned(),
            ],
        )
    }

    fn allows(uri: &str) -> bool {
        policy().allows(&uri.parse().unwrap())
    }

    #[test]
    fn scheme_host_and_port_must_match() {
        assert!(allows("http://127.0.0.1:4566/"));
        assert!(allows("https://api.example.com/v1?x=1"));
        assert!(allows("https://API.example.com:443/"));
        assert!(allows("http://localhost:8080/a"));
        assert!(allows("https://[::1]:8443/"));
        assert!(!allows("http://api.example.com/"));
        assert!(!allows("https://api.example.com:8443/"));
        assert!(!allows("https://evil.example.com/"));
        assert!(!allows("http://127.0.0.1:4567/"));
        assert!(!allows("http://localhost/"));
        assert!(!allows("http://user@127.0.0.1:4566/"));
    }

    #[test]
    fn origins_parse() {
        assert_eq!(
            Origin::parse("https://api.example.com")
                .unwrap()
                .to_string(),
            "https://api.example.com:443"
        );
        assert_eq!(
            Origin::parse("http://h:81/path").unwrap().to_string(),
            "http://h:81"
        );
        assert!(Origin::parse("ftp://h").is_none());
        assert!(Origin::parse("http://h:x").is_none());
        assert!(Origin::parse("http://").is_none());
    }
}
