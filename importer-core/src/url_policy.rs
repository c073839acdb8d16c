//! Where an API key may be sent: a URL override (an account's Mailchimp base URL or destination
//! URL) must use https, except plain http to a host on an allow-list from configuration
//! (`IMPORTER_HTTP_ALLOWED_HOSTS`: the simulators, local development). `importer-admin` refuses
//! to store a URL outside the policy, and a worker refuses to send a key to one (a job of such an
//! account dies as permanent, with the reason, before any request).
//!
//! The default allow-list is the loopback names (`localhost`, `127.0.0.1`, `::1`): plain http to
//! this machine does not cross a network, and the tests, the demo and local simulators need it.

use reqwest::Url;

/// The environment variable with the hosts plain http may reach, comma-separated.
pub const HTTP_ALLOWED_HOSTS_ENV: &str = "IMPORTER_HTTP_ALLOWED_HOSTS";

/// The allow-list when the variable is unset.
pub const DEFAULT_HTTP_ALLOWED_HOSTS: &str = "localhost,127.0.0.1,::1";

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlPolicyError {
    /// Not a URL.
    #[error("{url:?} is not a URL: {reason}")]
    Malformed {
        /// What was given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Neither https nor http.
    #[error("{url:?}: only https URLs are accepted (not {scheme})")]
    Scheme {
        /// What was given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// Plain http to a host off the allow-list.
    #[error("{url:?}: plain http is allowed only to the hosts of IMPORTER_HTTP_ALLOWED_HOSTS ({allowed}); use https, or add {host} to that list")]
    HttpHost {
        /// What was given.
        url: String,
        /// Its host.
        host: String,
        /// The allow-list in force.
        allowed: String,
    },
}

/// The hosts plain http may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPolicy {
    http_hosts: Vec<String>,
}

impl Default for UrlPolicy {
    fn default() -> Self {
        UrlPolicy::new(DEFAULT_HTTP_ALLOWED_HOSTS)
    }
}

impl UrlPolicy {
    /// The policy allowing plain http to the comma-separated `hosts` (case-insensitive; IPv6
    /// without brackets).
    pub fn new(hosts: &str) -> Self {
        UrlPolicy {
            http_hosts: hosts
                .split(',')
                .map(|h| {
                    h.trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// The policy of `IMPORTER_HTTP_ALLOWED_HOSTS`, or the default when it is unset.
    pub fn from_env() -> Self {
        match std::env::var(HTTP_ALLOWED_HOSTS_ENV) {
            Ok(hosts) => UrlPolicy::new(&hosts),
            Err(_) => UrlPolicy::default(),
        }
    }

    /// Accepts `url` if it is https, or http to an allowed host.
    pub fn check(&self, url: &str) -> Result<(), UrlPolicyError> {
        let parsed = Url::parse(url).map_err(|e| UrlPolicyError::Malformed {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        match parsed.scheme() {
            "https" => Ok(()),
            "http" => {
                let host = parsed
                    .host_str()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase();
                if self.http_hosts.contains(&host) {
                    Ok(())
                } else {
                    Err(UrlPolicyError::HttpHost {
                        url: url.to_owned(),
                        host,
                        allowed: self.http_hosts.join(","),
                    })
                }
            }
            other => Err(UrlPolicyError::Scheme {
                url: url.to_owned(),
                scheme: other.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_passes_and_plain_http_only_to_allowed_hosts() {
        let policy = UrlPolicy::new("sim, LocalHost,[::1]");
        assert!(policy.check("https://us6.api.mailchimp.com/3.0").is_ok());
        assert!(policy.check("https://records.example.com").is_ok());
        assert!(policy.check("http://sim:8081/3.0").is_ok());
        assert!(policy.check("http://localhost:9/dest").is_ok());
        assert!(policy.check("http://[::1]:8080").is_ok());
        assert!(matches!(
            policy.check("http://evil.example.com/3.0"),
            Err(UrlPolicyError::HttpHost { host, .. }) if host == "evil.example.com"
        ));
        assert!(matches!(
            policy.check("http://127.0.0.1:1"),
            Err(UrlPolicyError::HttpHost { .. })
        ));
        assert!(matches!(
            policy.check("ftp://sim/x"),
            Err(UrlPolicyError::Scheme { .. })
        ));
        assert!(matches!(
            policy.check("not a url"),
            Err(UrlPolicyError::Malformed { .. })
        ));
    }

    #[test]
    fn the_default_allows_plain_http_to_this_machine_only() {
        let policy = UrlPolicy::default();
        assert!(policy.check("http://127.0.0.1:8081/3.0").is_ok());
        assert!(policy.check("http://localhost:8082").is_ok());
        assert!(policy.check("http://[::1]:8082").is_ok());
        assert!(policy.check("http://10.0.0.5:8082").is_err());
        assert!(policy.check("http://sim:8082").is_err());
    }
}
