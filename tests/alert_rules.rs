//! The Prometheus alert rules shipped beside the dashboard
//! (`grafana/alerts.yml`): `promtool check rules` accepts them, their unit
//! tests (`grafana/alerts.test.yml`: each alert fires on a failing series and
//! stays quiet on healthy ones) pass under `promtool test rules`, and every
//! metric they name is one the exporter serves ([`METRICS`]).
//!
//! `promtool` comes from Debian's `prometheus` package
//! (`scripts/install-deps.sh`); under `CI=true` a missing one fails the
//! tests, elsewhere they are skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use objdatakey::metrics::METRICS;

/// The `grafana/` directory, where the rule files refer to each other.
fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

/// Runs `promtool args…` in `grafana/` and asserts it succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(grafana_dir())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    if !common::have_tool("promtool") {
        return;
    }
    promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn alert_rule_unit_tests_pass() {
    if !common::have_tool("promtool") {
        return;
    }
    promtool(&["test", "rules", "alerts.test.yml"]);
}

#[test]
fn alert_rules_name_only_exported_metrics() {
    let served = |name: &str| {
        METRICS.iter().any(|&(metric, kind, _)| {
            name == metric
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .into_iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(metric)))
        })
    };
    for file in ["alerts.yml", "alerts.test.yml"] {
        let text = std::fs::read_to_string(grafana_dir().join(file)).expect("read rule file");
        let unknown: Vec<&str> = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("objdatakey_") && !served(w))
            .collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the exporter does not serve: {unknown:?}"
        );
    }
}
