//! `/metrics`: every series described, the hpfeeds 3.x series under their
//! names and types, and per-ident labels only when asked for.

use crate::common::{start_node, Client};
use hpfriends_broker::telemetry::{Kind, ALL};

async fn scrape(n: &crate::common::Node) -> String {
    reqwest::get(format!("http://{}/metrics", n.running.http_addr)).await.unwrap().text().await.unwrap()
}

/// The `# TYPE` of every series in a scrape, by name.
fn types(text: &str) -> std::collections::HashMap<&str, &str> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).collect()
}

#[tokio::test]
async fn given_a_node_with_traffic_then_every_series_it_exports_has_help_and_type() {
    let n = start_node(|_| {}).await;
    n.declare(r#"{"users": ["jojo"], "keys": [{"ident": "m", "secret": "s", "owner": "jojo", "publish": ["c"], "subscribe": ["c"]}]}"#).await;
    let mut c = Client::login(n.running.hpfeeds_addr, "m", "s").await;
    c.subscribe("c").await;
    c.sync("c", "hello").await;
    let text = scrape(&n).await;
    let helps: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next()).collect();
    let types = types(&text);
    let samples: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    assert!(samples.len() >= 20, "too few series: {samples:?}");
    for sample in samples {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| sample.strip_suffix(suffix).filter(|f| types.get(f) == Some(&"histogram")))
            .unwrap_or(sample);
        assert!(helps.contains(&family), "{family} has no HELP:\n{text}");
        assert!(types.contains_key(family), "{family} has no TYPE:\n{text}");
        assert!(ALL.iter().any(|m| m.name == family), "{family} is not in telemetry::ALL");
    }
    // Each name is in the table once, with the type it is exported as.
    for (i, m) in ALL.iter().enumerate() {
        assert!(!ALL[..i].iter().any(|o| o.name == m.name), "{} is in telemetry::ALL twice", m.name);
        if let Some(t) = types.get(m.name) {
            let want = match m.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            assert_eq!(*t, want, "{}", m.name);
        }
    }
}

#[tokio::test]
async fn given_a_dashboard_made_for_hpfeeds_3_then_every_series_it_reads_is_there_with_its_type() {
    let n = start_node(|_| {}).await;
    n.declare(r#"{"users": ["jojo"], "keys": [{"ident": "d", "secret": "s", "owner": "jojo", "publish": ["c"], "subscribe": ["c"]}]}"#).await;
    let mut c = Client::login(n.running.hpfeeds_addr, "d", "s").await;
    c.subscribe("c").await;
    c.sync("c", "hello").await;
    // A client that leaves at once: its close is counted under a category.
    drop(tokio::net::TcpStream::connect(n.running.hpfeeds_addr).await.unwrap());
    let mut text = scrape(&n).await;
    let deadline = tokio::time::Instant::now() + crate::common::WAIT;
    while !text.contains("hpfeeds_broker_connection_error_total{") && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        text = scrape(&n).await;
    }
    let types = types(&text);
    // Scraped from an hpfeeds 3.1.0 broker.
    let hpfeeds_3 = [
        ("hpfeeds_broker_client_connections", "gauge"),
        ("hpfeeds_broker_connection_send_buffer_size", "gauge"),
        ("hpfeeds_broker_connection_receive_buffer_size", "gauge"),
        ("hpfeeds_broker_subscriptions", "gauge"),
        ("hpfeeds_client_authenticated_connections", "gauge"),
        ("hpfeeds_broker_connection_made_total", "counter"),
        ("hpfeeds_broker_connection_ready_total", "counter"),
        ("hpfeeds_broker_connection_error_total", "counter"),
        ("hpfeeds_broker_connection_lost_total", "counter"),
        ("hpfeeds_broker_connection_receive_buffer_fill_total", "counter"),
        ("hpfeeds_broker_connection_send_buffer_fill_total", "counter"),
        ("hpfeeds_broker_connection_send_buffer_drain_total", "counter"),
        ("hpfeeds_broker_connection_send_buffer_deadline_start_total", "counter"),
        ("hpfeeds_broker_connection_send_buffer_deadline_recover_total", "counter"),
        ("hpfeeds_broker_receive_publish_count_total", "counter"),
        ("hpfeeds_broker_receive_publish_size", "histogram"),
    ];
    for (name, want) in hpfeeds_3 {
        assert_eq!(types.get(name), Some(&want), "{name}:\n{text}");
        assert!(text.lines().any(|l| l.starts_with(name) && !l.starts_with('#')), "{name} has no sample:\n{text}");
    }
    assert!(text.contains("hpfeeds_broker_receive_publish_size_bucket{le=\"64\"}"), "{text}");
}

#[tokio::test]
async fn given_per_ident_switch_then_publishes_counted_per_ident_and_channel_and_not_by_default() {
    let keys = |ident: &str| {
        format!(
            r#"{{"users": ["jojo"], "keys": [{{"ident": "{ident}", "secret": "s", "owner": "jojo", "publish": ["c"], "subscribe": ["c"]}}]}}"#
        )
    };
    let labelled = start_node(|c| c.metrics_per_ident = true).await;
    labelled.declare(&keys("counted-sensor")).await;
    let plain = start_node(|_| {}).await;
    plain.declare(&keys("uncounted-sensor")).await;
    for (n, ident) in [(&labelled, "counted-sensor"), (&plain, "uncounted-sensor")] {
        let mut c = Client::login(n.running.hpfeeds_addr, ident, "s").await;
        c.subscribe("c").await;
        c.sync("c", "hello").await;
    }
    let text = scrape(&labelled).await;
    let series = r#"{ident="counted-sensor",chan="c"}"#;
    assert!(text.contains(&format!("hpfeeds_broker_receive_publish_count_total{series} 1")), "{text}");
    assert!(text.contains(&format!("hpfeeds_broker_receive_publish_size_sum{series} 5")), "{text}");
    assert!(text.contains(r#"hpfeeds_broker_connection_ready_total{ident="counted-sensor"} 1"#), "{text}");
    assert!(!text.contains("uncounted-sensor"), "the default must not label by ident:\n{text}");
    // The plain node's totals and the labelled series are one family.
    assert_eq!(text.matches("# TYPE hpfeeds_broker_receive_publish_size histogram").count(), 1, "{text}");
    assert!(text.contains("\nhpfeeds_broker_receive_publish_size_count "), "{text}");
}
