//! Checks and derivations for the `webhook.*` settings, kept out of the GUC glue
//! so they can be unit tested.

use std::net::IpAddr;

/// One entry of `webhook.listen_addresses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// `*`: every IPv4 and IPv6 interface.
    Any,
    /// `localhost`: the loopback addresses.
    Localhost,
    Ip(IpAddr),
}

/// Parses `webhook.listen_addresses`: a comma-separated list of IP addresses,
/// `localhost` or `*`, like PostgreSQL's own `listen_addresses` (host names other
/// than `localhost` are refused because resolving them at start-up makes the
/// listener depend on DNS).
pub fn parse_listen_addresses(value: &str) -> Result<Vec<ListenAddress>, String> {
    let mut out = Vec::new();
    for raw in value.split(',') {
        let entry = raw.trim();
        let parsed = match entry {
            "" => return Err("empty entry in the list".to_string()),
            "*" => ListenAddress::Any,
            _ if entry.eq_ignore_ascii_case("localhost") => ListenAddress::Localhost,
            _ => ListenAddress::Ip(
                entry
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .map_err(|_| {
                        format!("\"{entry}\" is not an IP address, \"localhost\" or \"*\"")
                    })?,
            ),
        };
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// Checks `webhook.public_base_url`: empty (derive it) or an absolute http(s) URL
/// without query string or fragment, since `/hooks/{id}` is appended to it.
pub fn check_public_base_url(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))
        .ok_or_else(|| "it must start with http:// or https://".to_string())?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err("it has no host".to_string());
    }
    if value.contains(['?', '#']) || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it must not contain a query string, fragment or spaces".to_string());
    }
    Ok(())
}

/// The base URL `webhook_url()` prints when `webhook.public_base_url` is empty:
/// the first listen address (loopback for `*` and `localhost`) and the port.
pub fn default_base_url(listen_addresses: &str, port: i32, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = match parse_listen_addresses(listen_addresses)
        .ok()
        .and_then(|list| list.into_iter().next())
    {
        Some(ListenAddress::Ip(IpAddr::V6(ip))) if !ip.is_unspecified() => format!("[{ip}]"),
        Some(ListenAddress::Ip(ip)) if !ip.is_unspecified() => ip.to_string(),
        Some(ListenAddress::Localhost) => "localhost".to_string(),
        _ => "127.0.0.1".to_string(),
    };
    format!("{scheme}://{host}:{port}")
}

/// `{base}/hooks/{id}`, with exactly one slash between base and path.
pub fn workflow_url(base: &str, id: &str) -> String {
    format!("{}/hooks/{id}", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_addresses("127.0.0.1, ::1,localhost,*,[::1]").unwrap(),
            vec![
                ListenAddress::Ip("127.0.0.1".parse().unwrap()),
                ListenAddress::Ip("::1".parse().unwrap()),
                ListenAddress::Localhost,
                ListenAddress::Any,
            ]
        );
        assert!(parse_listen_addresses("example.com").is_err());
        assert!(parse_listen_addresses("127.0.0.1,").is_err());
        assert!(parse_listen_addresses("").is_err());
        assert!(parse_listen_addresses("300.1.1.1").is_err());
    }

    #[test]
    fn base_url_checks() {
        assert!(check_public_base_url("").is_ok());
        assert!(check_public_base_url("https://hooks.example.com").is_ok());
        assert!(check_public_base_url("http://10.0.0.1:8080/prefix/").is_ok());
        assert!(check_public_base_url("ftp://x").is_err());
        assert!(check_public_base_url("hooks.example.com").is_err());
        assert!(check_public_base_url("https://").is_err());
        assert!(check_public_base_url("https://x/?a=1").is_err());
        assert!(check_public_base_url("https://x y").is_err());
    }

    #[test]
    fn derived_base_url() {
        assert_eq!(
            default_base_url("127.0.0.1", 8787, false),
            "http://127.0.0.1:8787"
        );
        assert_eq!(default_base_url("*", 80, false), "http://127.0.0.1:80");
        assert_eq!(
            default_base_url("0.0.0.0", 80, true),
            "https://127.0.0.1:80"
        );
        assert_eq!(
            default_base_url("::1, 127.0.0.1", 1, false),
            "http://[::1]:1"
        );
        assert_eq!(
            default_base_url("localhost", 2, false),
            "http://localhost:2"
        );
    }

    #[test]
    fn urls() {
        assert_eq!(workflow_url("http://h:1/", "abc"), "http://h:1/hooks/abc");
        assert_eq!(
            workflow_url("http://h:1/p", "abc"),
            "http://h:1/p/hooks/abc"
        );
    }
}
