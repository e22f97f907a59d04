//! The gateway's counters, in the Prometheus text format
//! (`docs/grafana-gateway.json` charts them).

use std::fmt::Write as _;

use super::auth::AuthError;

/// What the gateway counted. Gauges are set by the gateway as it goes.
#[derive(Debug, Clone, Default)]
pub struct GatewayMetrics {
    /// Connections open now.
    pub connections: u64,
    /// Rooms with at least one member now.
    pub rooms: u64,
    /// Room memberships now (a connection in three rooms counts three).
    pub members: u64,
    /// Messages published.
    pub publishes: u64,
    /// Messages handed for delivery to members (one per member per
    /// message, replays included).
    pub deliveries: u64,
    /// Deliveries the transport dropped (slow subscribers), as reported by
    /// [`super::Gateway::record_drops`].
    pub drops: u64,
    /// Requests refused with `rate_limited`.
    pub rate_limited: u64,
    /// Error events sent, by code, in the order `bad_request`,
    /// `forbidden`, `not_joined`, `rate_limited`, `too_large`, `unavailable`
    /// ([`GatewayMetrics::errors_for`]).
    pub errors: [u64; 6],
    /// Authentication failures (handshakes and refreshes) by reason, in
    /// the order of [`AuthError::LABELS`].
    pub auth_failures: [u64; AuthError::LABELS.len()],
    /// Connections closed because their token expired.
    pub expired: u64,
    /// Joins with `since` whose messages were all still in history.
    pub history_hits: u64,
    /// Joins with `since` that got `recovered: false`.
    pub history_misses: u64,
    /// Rooms the broker holds history or a seq for.
    pub history_rooms: u64,
    /// Bytes of history held.
    pub history_bytes: u64,
}

const ERROR_CODES: [&str; 6] = [
    "bad_request",
    "forbidden",
    "not_joined",
    "rate_limited",
    "too_large",
    "unavailable",
];

impl GatewayMetrics {
    pub(crate) fn auth_failure(&mut self, e: &AuthError) {
        if let Some(i) = AuthError::LABELS.iter().position(|l| *l == e.label()) {
            self.auth_failures[i] += 1;
        }
    }

    pub(crate) fn error(&mut self, code: super::protocol::ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code.as_str()) {
            self.errors[i] += 1;
        }
    }

    /// Error events sent with this code.
    pub fn errors_for(&self, code: super::protocol::ErrorCode) -> u64 {
        ERROR_CODES
            .iter()
            .position(|c| *c == code.as_str())
            .map_or(0, |i| self.errors[i])
    }

    /// Authentication failures with this label.
    pub fn auth_failures_for(&self, label: &str) -> u64 {
        AuthError::LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.auth_failures[i])
    }

    /// Render in the Prometheus text exposition format, names prefixed
    /// `wsreactor_gateway_`.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(3072);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                s,
                "# HELP wsreactor_gateway_{name} {help}\n# TYPE wsreactor_gateway_{name} {kind}\nwsreactor_gateway_{name} {v}"
            );
        };
        one(
            "connections",
            "gauge",
            "Gateway connections open now.",
            self.connections,
        );
        one(
            "rooms",
            "gauge",
            "Rooms with at least one member.",
            self.rooms,
        );
        one(
            "members",
            "gauge",
            "Room memberships (connection x room).",
            self.members,
        );
        one(
            "publishes_total",
            "counter",
            "Messages published.",
            self.publishes,
        );
        one(
            "deliveries_total",
            "counter",
            "Messages handed for delivery to members, replays included.",
            self.deliveries,
        );
        one(
            "drops_total",
            "counter",
            "Deliveries dropped by the transport (slow subscribers).",
            self.drops,
        );
        one(
            "rate_limited_total",
            "counter",
            "Requests refused by the per-connection rate limits.",
            self.rate_limited,
        );
        one(
            "expired_total",
            "counter",
            "Connections closed because their token expired (4001).",
            self.expired,
        );
        one(
            "history_hits_total",
            "counter",
            "Joins with since recovered from history.",
            self.history_hits,
        );
        one(
            "history_misses_total",
            "counter",
            "Joins with since that got recovered:false.",
            self.history_misses,
        );
        one(
            "history_rooms",
            "gauge",
            "Rooms with history or a sequence kept.",
            self.history_rooms,
        );
        one(
            "history_bytes",
            "gauge",
            "Bytes of history held.",
            self.history_bytes,
        );
        let _ = writeln!(
            s,
            "# HELP wsreactor_gateway_auth_failures_total Authentication failures by reason.\n# TYPE wsreactor_gateway_auth_failures_total counter"
        );
        for (label, v) in AuthError::LABELS.iter().zip(self.auth_failures) {
            let _ = writeln!(
                s,
                "wsreactor_gateway_auth_failures_total{{reason=\"{label}\"}} {v}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP wsreactor_gateway_errors_total Error events sent, by code.\n# TYPE wsreactor_gateway_errors_total counter"
        );
        for (code, v) in ERROR_CODES.iter().zip(self.errors) {
            let _ = writeln!(s, "wsreactor_gateway_errors_total{{code=\"{code}\"}} {v}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series_once() {
        let mut m = GatewayMetrics {
            publishes: 7,
            ..Default::default()
        };
        m.auth_failure(&AuthError::Expired);
        m.auth_failure(&AuthError::Expired);
        m.error(super::super::protocol::ErrorCode::TooLarge);
        let t = m.render();
        assert!(t.contains("\nwsreactor_gateway_publishes_total 7\n"));
        assert!(t.contains("wsreactor_gateway_auth_failures_total{reason=\"expired\"} 2\n"));
        assert!(t.contains("wsreactor_gateway_auth_failures_total{reason=\"missing\"} 0\n"));
        assert!(t.contains("wsreactor_gateway_errors_total{code=\"too_large\"} 1\n"));
        // Every sample line is NAME[{labels}] VALUE and every name has a TYPE.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (name, v) = line.rsplit_once(' ').unwrap();
            v.parse::<u64>().unwrap();
            let base = name.split('{').next().unwrap();
            assert!(t.contains(&format!("# TYPE {base} ")), "{base}");
        }
        assert_eq!(m.auth_failures_for("expired"), 2);
    }
}
