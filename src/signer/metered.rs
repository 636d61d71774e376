//! Counts what a signer does, for the broker's metrics: signatures, failures and time spent
//! signing. A KMS that is down or slow shows here before anyone reads a log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::key::{Algorithm, PublicKey};
use crate::signer::{SignError, Signer};

/// Counters of one signer since it was loaded.
#[derive(Debug, Default)]
pub struct SignerMetrics {
    signatures: AtomicU64,
    errors: AtomicU64,
    micros_total: AtomicU64,
    micros_max: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Signatures asked for.
    pub calls: u64,
    /// Of those, how many failed.
    pub errors: u64,
    /// Time spent in all of them, microseconds.
    pub micros_total: u64,
    /// The longest one, microseconds.
    pub micros_max: u64,
}

impl SignerMetrics {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            calls: self.signatures.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            micros_total: self.micros_total.load(Ordering::Relaxed),
            micros_max: self.micros_max.load(Ordering::Relaxed),
        }
    }

    fn record(&self, started: Instant, failed: bool) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.signatures.fetch_add(1, Ordering::Relaxed);
        self.errors.fetch_add(u64::from(failed), Ordering::Relaxed);
        self.micros_total.fetch_add(micros, Ordering::Relaxed);
        self.micros_max.fetch_max(micros, Ordering::Relaxed);
    }
}

impl Snapshot {
    /// The counters as Prometheus text lines for organisation `org`.
    pub fn prometheus(&self, org: &str) -> String {
        let org: String = org
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        format!(
            "codestorage_signer_calls_total{{org=\"{org}\"}} {}\n\
             codestorage_signer_errors_total{{org=\"{org}\"}} {}\n\
             codestorage_signer_seconds_total{{org=\"{org}\"}} {:.6}\n\
             codestorage_signer_seconds_max{{org=\"{org}\"}} {:.6}\n",
            self.calls,
            self.errors,
            self.micros_total as f64 / 1e6,
            self.micros_max as f64 / 1e6,
        )
    }
}

/// A signer whose every signature is counted in [`SignerMetrics`].
#[derive(Debug)]
pub struct Metered {
    inner: Box<dyn Signer>,
    metrics: Arc<SignerMetrics>,
}

impl Metered {
    /// Wraps `inner`; the counters are shared with whoever reads them.
    pub fn new(inner: Box<dyn Signer>) -> (Self, Arc<SignerMetrics>) {
        let metrics = Arc::new(SignerMetrics::default());
        (
            Self {
                inner,
                metrics: metrics.clone(),
            },
            metrics,
        )
    }
}

impl Signer for Metered {
    fn algorithm(&self) -> Algorithm {
        self.inner.algorithm()
    }

    fn public_key(&self) -> PublicKey {
        self.inner.public_key()
    }

    fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let started = Instant::now();
        let signed = self.inner.sign(signing_input);
        self.metrics.record(started, signed.is_err());
        signed
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::key::{KeySource, NewKey};
    use crate::signer::command::CommandSigner;
    use crate::signer::local::LocalSigner;

    #[test]
    fn signatures_failures_and_time_are_counted() {
        let source = KeySource::Env("K".into());
        let pem = crate::key::generate(NewKey::P256).unwrap();
        let local = LocalSigner::new(
            crate::key::parse_pem(pem.expose().as_bytes(), &source).unwrap(),
            &source,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("k.pub.pem");
        std::fs::write(&public, local.public_key().to_pem()).unwrap();
        // A real program that fails, as a KMS CLI without credentials does.
        let failing = KeySource::sign_command(vec!["false".into()], public);
        let KeySource::SignCommand(config) = &failing else {
            unreachable!()
        };
        let failing = CommandSigner::new(&failing, config, std::time::Duration::from_secs(5));
        let (good, good_metrics) = Metered::new(Box::new(local));
        let (bad, bad_metrics) = Metered::new(Box::new(failing.unwrap()));
        for _ in 0..3 {
            good.sign(b"a.b").unwrap();
        }
        bad.sign(b"a.b").unwrap_err();
        let good = good_metrics.snapshot();
        assert_eq!((good.calls, good.errors), (3, 0));
        assert!(good.micros_max <= good.micros_total);
        let bad = bad_metrics.snapshot();
        assert_eq!((bad.calls, bad.errors), (1, 1));
        assert!(bad.micros_total > 0, "starting a program takes time");
        let text = bad.prometheus("acme\"}");
        assert!(
            text.contains("codestorage_signer_errors_total{org=\"acme\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 4);
    }
}
