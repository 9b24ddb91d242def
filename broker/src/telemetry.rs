//! The process-wide Prometheus recorder behind `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the recorder on first use (several in-process nodes in one test
/// binary share it) and returns the handle that renders the text format.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new().install_recorder().unwrap_or_else(|_| {
            // Another recorder is installed already (only in tests): render an empty set.
            PrometheusBuilder::new().build_recorder().handle()
        })
    })
}
