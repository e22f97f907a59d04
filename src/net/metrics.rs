//! Counters of the reactor, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// What the reactor counted since it started.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// WebSocket connections open now (handshake completed, not yet closed).
    pub connections_open: u64,
    /// WebSocket connections opened since start.
    pub connections_total: u64,
    /// TCP connections accepted since start.
    pub accepted_total: u64,
    /// Accepted sockets turned away at `max_connections`.
    pub refused_total: u64,
    /// Upgrade requests rejected, by reason.
    pub handshakes_rejected: BTreeMap<&'static str, u64>,
    /// Complete messages received.
    pub messages_in: u64,
    /// Payload bytes of the messages received (after decompression, as
    /// the handler sees them; framing and handshakes are not counted).
    pub bytes_in: u64,
    /// Messages sent by the application.
    pub messages_out: u64,
    /// Payload bytes of the messages sent by the application (before
    /// compression; as `bytes_in`, framing is not counted).
    pub bytes_out: u64,
    /// Close codes received from peers.
    pub close_codes_received: BTreeMap<u16, u64>,
    /// Close codes we sent.
    pub close_codes_sent: BTreeMap<u16, u64>,
    /// Sends refused because the connection's queued output was full.
    pub overflows_total: u64,
    /// Iterations of the event loop.
    pub loop_iterations: u64,
    /// Publishes that reached at least one subscriber.
    pub publishes_total: u64,
    /// Publish deliveries queued for subscribers.
    pub deliveries_total: u64,
    /// Publish deliveries not queued because the subscriber was slow.
    pub deliveries_dropped_total: u64,
    /// Subscribers closed by [`SlowPolicy::Close`](crate::server::SlowPolicy::Close).
    pub slow_subscribers_closed_total: u64,
    /// Topics with at least one subscriber (a gauge, updated when metrics
    /// are rendered by the reactor).
    pub topics: u64,
    /// (connection, topic) subscriptions (a gauge, as `topics`).
    pub subscriptions: u64,
}

impl Metrics {
    pub(crate) fn rejected(&mut self, reason: &'static str) {
        *self.handshakes_rejected.entry(reason).or_default() += 1;
    }

    /// Add `other`'s counters and gauges to these (the sum over reactors).
    pub fn absorb(&mut self, other: &Metrics) {
        let Metrics {
            connections_open,
            connections_total,
            accepted_total,
            refused_total,
            handshakes_rejected,
            messages_in,
            bytes_in,
            messages_out,
            bytes_out,
            close_codes_received,
            close_codes_sent,
            overflows_total,
            loop_iterations,
            publishes_total,
            deliveries_total,
            deliveries_dropped_total,
            slow_subscribers_closed_total,
            topics,
            subscriptions,
        } = other;
        self.connections_open += connections_open;
        self.connections_total += connections_total;
        self.accepted_total += accepted_total;
        self.refused_total += refused_total;
        for (k, v) in handshakes_rejected {
            *self.handshakes_rejected.entry(k).or_default() += v;
        }
        self.messages_in += messages_in;
        self.bytes_in += bytes_in;
        self.messages_out += messages_out;
        self.bytes_out += bytes_out;
        for (k, v) in close_codes_received {
            *self.close_codes_received.entry(*k).or_default() += v;
        }
        for (k, v) in close_codes_sent {
            *self.close_codes_sent.entry(*k).or_default() += v;
        }
        self.overflows_total += overflows_total;
        self.loop_iterations += loop_iterations;
        self.publishes_total += publishes_total;
        self.deliveries_total += deliveries_total;
        self.deliveries_dropped_total += deliveries_dropped_total;
        self.slow_subscribers_closed_total += slow_subscribers_closed_total;
        // A topic with subscribers on two reactors counts twice: the gauge
        // is the sum of the per-reactor registries.
        self.topics += topics;
        self.subscriptions += subscriptions;
    }

    /// Render in the Prometheus text exposition format; `queued_bytes` and
    /// `connections_held` are gauges the reactor computes at scrape time.
    /// The conventional `process_*` metrics (memory, CPU, file
    /// descriptors, start time) follow, on Linux.
    pub fn render(&self, queued_bytes: usize, connections_held: usize) -> String {
        let mut s = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP wsreactor_{name} {help}\n# TYPE wsreactor_{name} {kind}\nwsreactor_{name} {v}");
        };
        one(
            "connections_open",
            "gauge",
            "WebSocket connections open now.",
            self.connections_open,
        );
        one(
            "connections_held",
            "gauge",
            "TCP connections held in any state.",
            connections_held as u64,
        );
        one(
            "connections_total",
            "counter",
            "WebSocket connections opened.",
            self.connections_total,
        );
        one(
            "accepted_total",
            "counter",
            "TCP connections accepted.",
            self.accepted_total,
        );
        one(
            "refused_total",
            "counter",
            "Sockets refused at max_connections.",
            self.refused_total,
        );
        one(
            "messages_in_total",
            "counter",
            "Messages received.",
            self.messages_in,
        );
        one(
            "bytes_in_total",
            "counter",
            "Payload bytes of the messages received.",
            self.bytes_in,
        );
        one(
            "messages_out_total",
            "counter",
            "Messages sent.",
            self.messages_out,
        );
        one(
            "bytes_out_total",
            "counter",
            "Payload bytes of the messages sent.",
            self.bytes_out,
        );
        one(
            "queued_bytes",
            "gauge",
            "Output bytes queued, not yet taken by the kernel.",
            queued_bytes as u64,
        );
        one(
            "overflows_total",
            "counter",
            "Sends refused at max_queued_output.",
            self.overflows_total,
        );
        one(
            "loop_iterations_total",
            "counter",
            "Event loop iterations.",
            self.loop_iterations,
        );
        one(
            "publishes_total",
            "counter",
            "Publishes that reached at least one subscriber.",
            self.publishes_total,
        );
        one(
            "deliveries_total",
            "counter",
            "Publish deliveries queued for subscribers.",
            self.deliveries_total,
        );
        one(
            "deliveries_dropped_total",
            "counter",
            "Publish deliveries skipped for slow subscribers.",
            self.deliveries_dropped_total,
        );
        one(
            "slow_subscribers_closed_total",
            "counter",
            "Subscribers closed for a backlog over max_subscriber_backlog.",
            self.slow_subscribers_closed_total,
        );
        one("topics", "gauge", "Topics with subscribers.", self.topics);
        one(
            "subscriptions",
            "gauge",
            "Subscriptions (connection, topic).",
            self.subscriptions,
        );
        let _ = writeln!(
            s,
            "# HELP wsreactor_handshakes_rejected_total Upgrade requests rejected, by reason."
        );
        let _ = writeln!(s, "# TYPE wsreactor_handshakes_rejected_total counter");
        for (reason, v) in &self.handshakes_rejected {
            let _ = writeln!(
                s,
                "wsreactor_handshakes_rejected_total{{reason=\"{reason}\"}} {v}"
            );
        }
        for (name, help, map) in [
            (
                "close_codes_received_total",
                "Close codes received.",
                &self.close_codes_received,
            ),
            (
                "close_codes_sent_total",
                "Close codes sent.",
                &self.close_codes_sent,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP wsreactor_{name} {help}\n# TYPE wsreactor_{name} counter"
            );
            for (code, v) in map {
                let _ = writeln!(s, "wsreactor_{name}{{code=\"{code}\"}} {v}");
            }
        }
        super::process::render(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut m = Metrics {
            connections_open: 2,
            messages_in: 7,
            ..Metrics::default()
        };
        m.rejected("bad_key");
        m.rejected("bad_key");
        m.close_codes_sent.insert(1001, 3);
        let text = m.render(42, 5);
        assert!(text.contains("\nwsreactor_connections_open 2\n"), "{text}");
        assert!(text.contains("\nwsreactor_messages_in_total 7\n"));
        assert!(text.contains("\nwsreactor_queued_bytes 42\n"));
        assert!(text.contains("\nwsreactor_connections_held 5\n"));
        assert!(text.contains("wsreactor_handshakes_rejected_total{reason=\"bad_key\"} 2\n"));
        assert!(text.contains("wsreactor_close_codes_sent_total{code=\"1001\"} 3\n"));
        assert!(text.contains("# TYPE wsreactor_bytes_out_total counter\n"));
    }

    #[test]
    fn absorb_sums_every_counter() {
        let mut a = Metrics {
            messages_in: 3,
            ..Metrics::default()
        };
        a.rejected("bad_key");
        a.close_codes_sent.insert(1001, 1);
        let mut b = a.clone();
        b.deliveries_total = 5;
        b.close_codes_sent.insert(1000, 2);
        a.absorb(&b);
        assert_eq!(a.messages_in, 6);
        assert_eq!(a.deliveries_total, 5);
        assert_eq!(a.handshakes_rejected["bad_key"], 2);
        assert_eq!(a.close_codes_sent[&1001], 2);
        assert_eq!(a.close_codes_sent[&1000], 2);
    }
}
