//! Typed configuration, read once at cold start. A missing or malformed value
//! is a start-up error that names the variable.

use std::time::Duration;

use ipnet::IpNet;

use crate::domain::history::MAX_DELIVERY_LOG_DAYS;
use crate::domain::{AddressPolicy, DeliveryLog, EndpointRules, PublishShare};

/// The variable naming the EventBridge bus of the operational events
/// (`domain::operational`), in every function; unset or empty: none.
pub const EVENT_BUS: &str = "OPERATIONAL_EVENT_BUS";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Reads variables through a lookup function, so tests need not touch the
/// process environment.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl<'a> Env<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// A variable's value; empty counts as unset.
    pub fn optional(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError::Missing(name))
    }

    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(ConfigError::Invalid {
                name,
                reason: format!("expected true or false, got {other:?}"),
            }),
        }
    }

    /// A duration such as `15s`, `500ms`, `90s` or `2d`.
    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        humantime::parse_duration(raw.trim())
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("expected a duration such as 15s or 2d, got {raw:?}"),
            })
    }

    /// A whole number of at least 1.
    pub fn count(&self, name: &'static str, default: usize) -> Result<usize, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("expected a whole number of at least 1, got {raw:?}"),
            })
    }

    /// `PUBLISH_RATE_PER_PROJECT`: publishes per second of one project, 0
    /// for no limit; `default` when unset.
    pub fn publish_share(&self, default: u32) -> Result<PublishShare, ConfigError> {
        const NAME: &str = "PUBLISH_RATE_PER_PROJECT";
        let Some(raw) = self.optional(NAME) else {
            return Ok(PublishShare::per_second(default));
        };
        raw.trim()
            .parse::<u32>()
            .map(PublishShare::per_second)
            .map_err(|_| ConfigError::Invalid {
                name: NAME,
                reason: format!(
                    "expected a whole number of publishes per second, 0 for no limit, got {raw:?}"
                ),
            })
    }

    /// `DELIVERY_LOG_DAYS`: days the delivery history is kept, 0 (off) to
    /// 365; 30 by default.
    pub fn delivery_log(&self) -> Result<DeliveryLog, ConfigError> {
        const NAME: &str = "DELIVERY_LOG_DAYS";
        let Some(raw) = self.optional(NAME) else {
            return Ok(DeliveryLog::default());
        };
        raw.trim()
            .parse::<u32>()
            .ok()
            .filter(|days| *days <= MAX_DELIVERY_LOG_DAYS)
            .map(DeliveryLog::days)
            .ok_or_else(|| ConfigError::Invalid {
                name: NAME,
                reason: format!(
                    "expected a whole number of days from 0 (off) to {MAX_DELIVERY_LOG_DAYS}, got {raw:?}"
                ),
            })
    }

    /// A comma-separated list of CIDRs (`127.0.0.0/8,::1/128`); a bare
    /// address counts as a single-host network.
    pub fn cidrs(&self, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        name,
                        reason: format!("{s:?} is not a CIDR such as 127.0.0.0/8"),
                    })
            })
            .collect()
    }

    /// `ALLOW_HTTP_ENDPOINTS` and `ENDPOINT_ALLOW_CIDRS`: both off by default.
    pub fn endpoint_rules(&self) -> Result<EndpointRules, ConfigError> {
        Ok(EndpointRules {
            allow_http: self.flag("ALLOW_HTTP_ENDPOINTS", false)?,
            addresses: AddressPolicy::with_allow_list(self.cidrs("ENDPOINT_ALLOW_CIDRS")?),
        })
    }
}

/// Reads the real process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_delivery_log_keeps_30_days_by_default_and_0_turns_it_off() {
        let read = |pairs: &[(&str, &str)]| Env::new(&env_of(pairs)).delivery_log();
        assert_eq!(read(&[]).unwrap(), DeliveryLog::days(30));
        assert_eq!(
            read(&[("DELIVERY_LOG_DAYS", "0")]).unwrap(),
            DeliveryLog::off()
        );
        assert_eq!(
            read(&[("DELIVERY_LOG_DAYS", " 365 ")]).unwrap(),
            DeliveryLog::days(365)
        );
        for bad in ["366", "-1", "1.5", "thirty"] {
            let err = read(&[("DELIVERY_LOG_DAYS", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("DELIVERY_LOG_DAYS"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_publish_share_reads_a_rate_and_0_turns_it_off() {
        let read = |pairs: &[(&str, &str)]| Env::new(&env_of(pairs)).publish_share(5);
        assert_eq!(read(&[]).unwrap(), PublishShare::per_second(5));
        assert_eq!(
            read(&[("PUBLISH_RATE_PER_PROJECT", " 20 ")]).unwrap(),
            PublishShare::per_second(20)
        );
        assert_eq!(
            read(&[("PUBLISH_RATE_PER_PROJECT", "0")]).unwrap(),
            PublishShare::off()
        );
        for bad in ["-1", "1.5", "fast"] {
            let err = read(&[("PUBLISH_RATE_PER_PROJECT", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("PUBLISH_RATE_PER_PROJECT"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn endpoint_rules_default_to_https_and_public_only() {
        let lookup = env_of(&[]);
        let rules = Env::new(&lookup).endpoint_rules().unwrap();
        assert_eq!(rules, EndpointRules::default());
    }

    #[test]
    fn endpoint_rules_read_flag_and_cidrs() {
        let lookup = env_of(&[
            ("ALLOW_HTTP_ENDPOINTS", "true"),
            ("ENDPOINT_ALLOW_CIDRS", "127.0.0.0/8, ::1"),
        ]);
        let rules = Env::new(&lookup).endpoint_rules().unwrap();
        assert!(rules.allow_http);
        assert_eq!(
            rules.addresses.to_string(),
            "public addresses and 127.0.0.0/8, ::1/128"
        );
    }

    #[test]
    fn durations_and_counts() {
        let lookup = env_of(&[
            ("A", "90s"),
            ("B", "2d"),
            ("C", "500ms"),
            ("D", "soon"),
            ("E", "0s"),
            ("N", "4"),
            ("M", "0"),
        ]);
        let env = Env::new(&lookup);
        assert_eq!(
            env.duration("A", Duration::ZERO).unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            env.duration("B", Duration::ZERO).unwrap(),
            Duration::from_secs(2 * 86400)
        );
        assert_eq!(
            env.duration("C", Duration::ZERO).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            env.duration("UNSET", Duration::from_secs(15)).unwrap(),
            Duration::from_secs(15)
        );
        assert!(
            env.duration("D", Duration::ZERO)
                .unwrap_err()
                .to_string()
                .contains("D")
        );
        assert!(env.duration("E", Duration::ZERO).is_err());
        assert_eq!(env.count("N", 10).unwrap(), 4);
        assert_eq!(env.count("UNSET", 10).unwrap(), 10);
        assert!(env.count("M", 10).is_err());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let lookup = env_of(&[
            ("ALLOW_HTTP_ENDPOINTS", "maybe"),
            ("ENDPOINT_ALLOW_CIDRS", "nope"),
        ]);
        let env = Env::new(&lookup);
        assert!(
            env.flag("ALLOW_HTTP_ENDPOINTS", false)
                .unwrap_err()
                .to_string()
                .contains("ALLOW_HTTP_ENDPOINTS")
        );
        assert!(
            env.cidrs("ENDPOINT_ALLOW_CIDRS")
                .unwrap_err()
                .to_string()
                .contains("ENDPOINT_ALLOW_CIDRS")
        );
        assert!(matches!(
            env.required("TABLE_NAME"),
            Err(ConfigError::Missing("TABLE_NAME"))
        ));
    }
}
