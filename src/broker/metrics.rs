//! The broker's counters, per sandbox and in all, and their Prometheus text for `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use super::audit::Decision;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// One sandbox's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Tokens handed out.
    pub issued: AtomicU64,
    /// Requests refused by the sandbox's policy (or its removal, or its lease's end).
    pub refused: AtomicU64,
    /// Requests declined: not for a Code Storage host.
    pub declined: AtomicU64,
    /// Requests that could not be read or answered, and connections turned away as busy.
    pub errors: AtomicU64,
    /// When the last request came, in Unix seconds (0: none yet).
    pub last_request: AtomicI64,
}

impl Counters {
    /// Counts one request's outcome at `now`.
    pub fn count(&self, decision: Decision, now: i64) {
        let counter = match decision {
            Decision::Granted => &self.issued,
            Decision::Refused => &self.refused,
            Decision::Declined => &self.declined,
            Decision::Noted => {
                self.last_request.store(now, Ordering::Relaxed);
                return;
            }
            Decision::Error => &self.errors,
            Decision::Summary => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.last_request.store(now, Ordering::Relaxed);
    }
}

/// Counters of the whole broker.
#[derive(Debug, Default)]
pub struct Metrics {
    /// How long each `get` took, by bucket (the last counts everything above the bounds).
    latency: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of those times, in microseconds.
    latency_micros: AtomicU64,
    /// Signing failures (a key, an agent, a KMS).
    pub signer_errors: AtomicU64,
}

impl Metrics {
    /// Counts one answered request that took `took`.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.fetch_add(micros, Ordering::Relaxed);
    }
}

/// What `/metrics` shows of one sandbox.
pub struct SandboxView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its counters.
    pub counters: &'a Counters,
}

/// The Prometheus text exposition of `metrics`, `sandboxes` and `connections` open now.
pub fn prometheus(metrics: &Metrics, sandboxes: &[SandboxView<'_>], connections: usize) -> String {
    let mut out = String::new();
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    out.push_str("# HELP codestorage_broker_tokens_issued_total Tokens handed out.\n");
    out.push_str("# TYPE codestorage_broker_tokens_issued_total counter\n");
    for s in sandboxes {
        let issued = get(&s.counters.issued);
        let _ = writeln!(
            out,
            "codestorage_broker_tokens_issued_total{{sandbox=\"{}\"}} {issued}",
            s.name
        );
    }
    out.push_str(
        "# HELP codestorage_broker_requests_refused_total Requests given no token, by reason.\n",
    );
    out.push_str("# TYPE codestorage_broker_requests_refused_total counter\n");
    for s in sandboxes {
        for (reason, counter) in [
            ("policy", &s.counters.refused),
            ("declined", &s.counters.declined),
            ("error", &s.counters.errors),
        ] {
            let _ = writeln!(
                out,
                "codestorage_broker_requests_refused_total{{sandbox=\"{}\",reason=\"{reason}\"}} {}",
                s.name,
                get(counter)
            );
        }
    }
    out.push_str("# HELP codestorage_broker_request_seconds Time to answer a request.\n");
    out.push_str("# TYPE codestorage_broker_request_seconds histogram\n");
    let mut cumulative = 0;
    for (i, bound) in BUCKETS.iter().enumerate() {
        cumulative += get(&metrics.latency[i]);
        let _ = writeln!(
            out,
            "codestorage_broker_request_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += get(&metrics.latency[BUCKETS.len()]);
    let _ = writeln!(
        out,
        "codestorage_broker_request_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let sum = get(&metrics.latency_micros) as f64 / 1e6;
    let _ = writeln!(out, "codestorage_broker_request_seconds_sum {sum}");
    let _ = writeln!(out, "codestorage_broker_request_seconds_count {cumulative}");
    for (name, help, value) in [
        ("sandboxes", "Sandboxes served.", sandboxes.len() as u64),
        (
            "open_connections",
            "Sandbox connections being served.",
            connections as u64,
        ),
        (
            "signer_errors_total",
            "Signing failures.",
            get(&metrics.signer_errors),
        ),
    ] {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP codestorage_broker_{name} {help}");
        let _ = writeln!(out, "# TYPE codestorage_broker_{name} {kind}");
        let _ = writeln!(out, "codestorage_broker_{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_counts_per_sandbox_and_the_histogram_is_cumulative() {
        let metrics = Metrics::default();
        metrics.observe(Duration::from_micros(500));
        metrics.observe(Duration::from_secs(10));
        let counters = Counters::default();
        counters.count(Decision::Granted, 5);
        counters.count(Decision::Refused, 6);
        let text = prometheus(
            &metrics,
            &[SandboxView {
                name: "a",
                counters: &counters,
            }],
            3,
        );
        for line in [
            "codestorage_broker_tokens_issued_total{sandbox=\"a\"} 1",
            "codestorage_broker_requests_refused_total{sandbox=\"a\",reason=\"policy\"} 1",
            "codestorage_broker_request_seconds_bucket{le=\"0.001\"} 1",
            "codestorage_broker_request_seconds_bucket{le=\"+Inf\"} 2",
            "codestorage_broker_open_connections 3",
            "codestorage_broker_sandboxes 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert_eq!(counters.last_request.load(Ordering::Relaxed), 6);
    }
}
