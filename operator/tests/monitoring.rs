//! The monitoring examples (examples/monitoring) query only metrics the code registers, with
//! PromQL that fits each metric's type; the rule file has the PrometheusRule shape and points at
//! sections of docs/operations.md that exist.
//!
//! The metric names come from the real constructors (gateway, engine, Redis bus, operator), not
//! from a list here: renaming a metric in the code breaks this test until the examples follow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gamefleet_operator::crd::GameFleet;
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::proto::MetricType;
use regex::Regex;
use serde_json::Value;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A labelled family appears in `gather()` only once it has a child: give it one, with as many
/// values as the family has labels (read from its descriptor, so no label names live here).
fn touch<T: MetricVecBuilder>(vec: &MetricVec<T>) {
    let labels = vec.desc()[0].variable_labels.len();
    vec.with_label_values(&vec!["x"; labels]);
}

fn add_families(registry: &prometheus::Registry, out: &mut BTreeMap<String, Kind>) {
    for mf in registry.gather() {
        let kind = match mf.get_field_type() {
            MetricType::COUNTER => Kind::Counter,
            MetricType::GAUGE => Kind::Gauge,
            MetricType::HISTOGRAM => Kind::Histogram,
            other => panic!("{}: unexpected type {other:?}", mf.name()),
        };
        let previous = out.insert(mf.name().to_owned(), kind);
        assert!(
            previous.is_none_or(|p| p == kind),
            "{} registered with two types",
            mf.name()
        );
    }
}

/// Every metric family a gateway, an engine and the operator export, with its type. Processes
/// are assembled as `gameserver::distributed` does: one registry each, both with the Redis bus.
fn exported() -> BTreeMap<String, Kind> {
    let mut out = BTreeMap::new();
    // The bus spawns its subscriber on the runtime; a runtime that is never driven keeps it
    // from connecting anywhere.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let bus = |id: &str| {
        gameserver::bus::redis::RedisBus::connect(gameserver::bus::redis::RedisBusConfig::new(
            "redis://127.0.0.1:1",
            id,
        ))
        .unwrap()
    };

    let gateway = prometheus::Registry::new();
    bus("gw").register_metrics(&gateway).unwrap();
    let gw = gameserver::metrics::GatewayMetrics::new(&gateway).unwrap();
    for v in [
        &gw.bets,
        &gw.bet_rejections,
        &gw.errors,
        &gw.disconnects,
        &gw.resumed_streams,
        &gw.refused_connections,
    ] {
        touch(v);
    }
    gw.received("join");
    add_families(&gateway, &mut out);

    let engine = prometheus::Registry::new();
    bus("engine").register_metrics(&engine).unwrap();
    let em = gameserver::engine::metrics::EngineMetrics::register(&engine).unwrap();
    for v in [&em.bets_settled, &em.bets_rejected, &em.ledger_ops] {
        touch(v);
    }
    add_families(&engine, &mut out);

    // The operator's registry is private; its text exposition carries the same families.
    let op = gamefleet_operator::metrics::Metrics::new().unwrap();
    touch(&op.failures);
    touch(&op.autoscale.scrape_failures);
    touch(&op.autoscale.desired_replicas);
    touch(&op.autoscale.current_replicas);
    touch(&op.autoscale.input);
    for line in op.render().lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let kind = match kind {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                other => panic!("{name}: unexpected type {other}"),
            };
            out.insert(name.to_owned(), kind);
        }
    }
    out
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

const FUNCTIONS: &[&str] = &[
    "rate",
    "irate",
    "increase",
    "delta",
    "deriv",
    "changes",
    "resets",
    "histogram_quantile",
    "label_replace",
    "vector",
    "scalar",
    "abs",
    "clamp_min",
    "clamp_max",
    "round",
    "max_over_time",
    "min_over_time",
    "avg_over_time",
    "predict_linear",
    "absent",
];

/// Functions whose argument must be a counter (or a histogram's counter series).
const COUNTER_FUNCTIONS: &[&str] = &["rate", "irate", "increase", "resets"];

/// Keywords followed by a label list in parentheses.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

const OTHER_KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

#[derive(Debug)]
struct MetricRef {
    name: String,
    /// Enclosing calls, outermost first ("" for a bare parenthesis).
    calls: Vec<String>,
}

#[derive(Debug, Default)]
struct Parsed {
    metrics: Vec<MetricRef>,
    variables: BTreeSet<String>,
}

struct Frame {
    call: String,
    /// A `by (… le …)` was seen inside it.
    le: bool,
}

/// A small PromQL tokenizer: enough to find the metric names of an expression and the calls
/// around each. Label matchers (`{…}`), ranges (`[…]`), strings and label lists after
/// `by`/`without`/`on`/`ignoring`/`group_*` are skipped; `$var` and `${var}` are Grafana
/// variables.
fn parse(expr: &str) -> Result<Parsed, String> {
    let c: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut parsed = Parsed::default();
    let mut stack: Vec<Frame> = Vec::new();
    // The call an upcoming `(` opens: set by `name(` or by `sum by (…) (`.
    let mut pending: Option<String> = None;
    // `$1` in label_replace is not a variable: names start with a letter or `_`.
    let variable = Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)").unwrap();
    let skip_ws = |i: &mut usize| {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
    };
    let ident_at = |i: usize| {
        let mut j = i;
        while j < c.len() && (c[j].is_ascii_alphanumeric() || c[j] == '_' || c[j] == ':') {
            j += 1;
        }
        c[i..j].iter().collect::<String>()
    };
    // Index just past the delimiter closing the one at `i`, skipping quoted strings.
    let close = |i: usize, open: char, shut: char| -> Result<usize, String> {
        let mut depth = 0;
        let mut j = i;
        while j < c.len() {
            match c[j] {
                q @ ('"' | '\'' | '`') => {
                    j += 1;
                    while j < c.len() && c[j] != q {
                        j += if c[j] == '\\' { 2 } else { 1 };
                    }
                }
                ch if ch == open => depth += 1,
                ch if ch == shut => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(j + 1);
                    }
                }
                _ => {}
            }
            j += 1;
        }
        Err(format!("unclosed {open} in {expr}"))
    };
    while i < c.len() {
        let ch = c[i];
        match ch {
            _ if ch.is_whitespace() => i += 1,
            '"' | '\'' | '`' => {
                // A string outside a selector: label_replace's arguments.
                i += 1;
                while i < c.len() && c[i] != ch {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let end = close(i, ch, if ch == '{' { '}' } else { ']' })?;
                // Grafana variables are interpolated inside selectors and ranges too.
                let inner: String = c[i..end].iter().collect();
                parsed
                    .variables
                    .extend(variable.captures_iter(&inner).map(|m| m[1].to_owned()));
                i = end;
            }
            '}' | ']' => return Err(format!("stray {ch} in {expr}")),
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                let braced = c.get(i) == Some(&'{');
                if braced {
                    i += 1;
                }
                let name = ident_at(i);
                i += name.len();
                if braced {
                    i += 1;
                }
                parsed.variables.insert(name);
            }
            '(' => {
                stack.push(Frame {
                    call: pending.take().unwrap_or_default(),
                    le: false,
                });
                i += 1;
            }
            ')' => {
                let frame = stack
                    .pop()
                    .ok_or_else(|| format!("unbalanced ) in {expr}"))?;
                if frame.call == "histogram_quantile" && !frame.le {
                    return Err(format!(
                        "histogram_quantile without an aggregation by le in {expr}"
                    ));
                }
                i += 1;
            }
            _ if ch.is_ascii_digit()
                || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                // Numbers and durations (0.99, 5m, 1e3).
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
            }
            _ if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' => {
                let word = ident_at(i);
                i += word.len();
                let mut j = i;
                skip_ws(&mut j);
                let next = c.get(j).copied();
                if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    if next == Some('(') {
                        let end = close(j, '(', ')')?;
                        let labels: String = c[j + 1..end - 1].iter().collect();
                        if labels.split(',').any(|l| l.trim() == "le") {
                            for f in &mut stack {
                                f.le = true;
                            }
                        }
                        i = end;
                    }
                } else if OTHER_KEYWORDS.contains(&word.as_str()) {
                } else if next == Some('(') {
                    if !FUNCTIONS.contains(&word.as_str()) && !AGGREGATIONS.contains(&word.as_str())
                    {
                        return Err(format!("unknown function {word} in {expr}"));
                    }
                    pending = Some(word);
                } else if AGGREGATIONS.contains(&word.as_str())
                    && ["by", "without"].contains(&ident_at(j).as_str())
                {
                    pending = Some(word);
                } else {
                    parsed.metrics.push(MetricRef {
                        name: word,
                        calls: stack.iter().map(|f| f.call.clone()).collect(),
                    });
                }
            }
            _ => i += 1,
        }
    }
    if !stack.is_empty() || pending.is_some() {
        return Err(format!("unbalanced ( in {expr}"));
    }
    Ok(parsed)
}

/// Checks one referenced name against the exported families and the calls around it.
fn check_metric(m: &MetricRef, exported: &BTreeMap<String, Kind>) -> Result<(), String> {
    let inner = m.calls.last().map(String::as_str).unwrap_or("");
    let counter_fn = COUNTER_FUNCTIONS.contains(&inner);
    match exported.get(&m.name) {
        Some(Kind::Counter) if !counter_fn => Err(format!(
            "counter {} must be under rate/irate/increase, is under {inner:?}",
            m.name
        )),
        Some(Kind::Gauge) if counter_fn => Err(format!(
            "gauge {} is under {inner}(), which is meant for counters",
            m.name
        )),
        Some(Kind::Histogram) => Err(format!(
            "histogram {} has no series of that name: use _bucket, _sum or _count",
            m.name
        )),
        Some(_) => Ok(()),
        None => {
            let (base, suffix) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| m.name.strip_suffix(s).map(|b| (b, *s)))
                .ok_or_else(|| not_exported(&m.name))?;
            if exported.get(base) != Some(&Kind::Histogram) {
                return Err(not_exported(&m.name));
            }
            if !counter_fn {
                return Err(format!(
                    "{} is a histogram's counter: put it under rate/increase",
                    m.name
                ));
            }
            if suffix == "_bucket" && !m.calls.iter().any(|c| c == "histogram_quantile") {
                return Err(format!("{} outside histogram_quantile", m.name));
            }
            Ok(())
        }
    }
}

fn not_exported(name: &str) -> String {
    format!(
        "{name} is not a metric the gateway, engine or operator registers \
         (a new labelled family must also be touched in exported())"
    )
}

fn dashboard() -> Value {
    serde_json::from_str(&read("examples/monitoring/grafana-dashboard.json")).unwrap()
}

fn rule() -> Value {
    serde_saphyr::from_str(&read("examples/monitoring/prometheus-rule.yaml")).unwrap()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = todo.pop() {
        if let Some(nested) = p["panels"].as_array() {
            todo.extend(nested);
        }
        out.push(p);
    }
    out
}

/// The PromQL of every dashboard target, and the selector of every `label_values` variable.
fn dashboard_exprs(dashboard: &Value) -> (Vec<String>, Vec<String>) {
    let mut targets = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            targets.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    let mut selectors = Vec::new();
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap();
        let args = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable query {q}: expected label_values(…)"));
        let (selector, _label) = args.rsplit_once(',').unwrap();
        selectors.push(selector.trim().to_owned());
    }
    (targets, selectors)
}

fn rule_exprs(rule: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in rule["spec"]["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            out.push((
                r["alert"].as_str().unwrap_or("?").to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// Every problem with the examples' queries: unknown metrics, wrong use of a type, syntax the
/// tokenizer cannot follow, Grafana variables in the rules or undefined in the dashboard.
fn query_problems(
    dashboard: &Value,
    rule: &Value,
    exported: &BTreeMap<String, Kind>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let defined: BTreeSet<String> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .chain(["__rate_interval", "__interval", "__range"].map(String::from))
        .collect();
    let (targets, selectors) = dashboard_exprs(dashboard);
    for expr in &targets {
        match parse(expr) {
            Err(e) => problems.push(format!("dashboard: {e}")),
            Ok(p) => {
                for v in p.variables.difference(&defined) {
                    problems.push(format!("dashboard: undefined variable ${v} in {expr}"));
                }
                problems.extend(
                    p.metrics
                        .iter()
                        .filter_map(|m| check_metric(m, exported).err())
                        .map(|e| format!("dashboard: {e}: {expr}")),
                );
            }
        }
    }
    for sel in &selectors {
        let p = parse(sel).unwrap();
        for m in &p.metrics {
            // A variable lists label values of a series: existence is all that matters.
            if !exported.contains_key(&m.name) {
                problems.push(format!("dashboard variable: {}", not_exported(&m.name)));
            }
        }
    }
    for (alert, expr) in rule_exprs(rule) {
        match parse(&expr) {
            Err(e) => problems.push(format!("{alert}: {e}")),
            Ok(p) => {
                if !p.variables.is_empty() {
                    problems.push(format!("{alert}: Grafana variables in a rule: {expr}"));
                }
                if p.metrics.is_empty() {
                    problems.push(format!("{alert}: no metric in {expr}"));
                }
                problems.extend(
                    p.metrics
                        .iter()
                        .filter_map(|m| check_metric(m, exported).err())
                        .map(|e| format!("{alert}: {e}")),
                );
            }
        }
    }
    problems
}

#[test]
fn the_examples_query_only_metrics_the_code_exports() {
    let exported = exported();
    // The families are really there: one of each component, with the type the PromQL assumes.
    for (name, kind) in [
        ("ws_message_latency_ms", Kind::Histogram),
        ("engine_bets_settled_total", Kind::Counter),
        ("bet_stream_backlog", Kind::Gauge),
        ("gamefleet_autoscaler_desired_replicas", Kind::Gauge),
    ] {
        assert_eq!(exported.get(name), Some(&kind), "{name}: {exported:?}");
    }
    let (dashboard, rule) = (dashboard(), rule());
    let problems = query_problems(&dashboard, &rule, &exported);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let (targets, _) = dashboard_exprs(&dashboard);
    let used: BTreeSet<String> = targets
        .iter()
        .chain(rule_exprs(&rule).iter().map(|(_, e)| e))
        .flat_map(|e| parse(e).unwrap().metrics)
        .map(|m| m.name)
        .collect();
    assert!(
        targets.len() >= 30,
        "only {} dashboard queries found",
        targets.len()
    );
    assert!(
        used.len() >= 30,
        "only {} metrics used: {used:?}",
        used.len()
    );
}

#[test]
fn a_renamed_metric_or_a_misused_type_is_caught() {
    let exported = exported();
    let (mut dashboard, mut rule) = (dashboard(), rule());
    assert!(query_problems(&dashboard, &rule, &exported).is_empty());

    // A metric renamed in the code (here: in the example) is reported with its name.
    let expr = rule["spec"]["groups"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|g| g["rules"].as_array_mut().unwrap())
        .find(|r| r["alert"] == "GameFleetLedgerHalted")
        .map(|r| &mut r["expr"])
        .unwrap();
    let renamed = expr
        .as_str()
        .unwrap()
        .replace("engine_ledger_halted", "engine_ledger_stopped");
    *expr = renamed.into();
    let problems = query_problems(&dashboard, &rule, &exported);
    assert!(
        problems.len() == 1 && problems[0].contains("engine_ledger_stopped is not a metric"),
        "{problems:?}"
    );

    let cases = [
        (
            "sum(ws_bets_total)",
            "counter ws_bets_total must be under rate",
        ),
        (
            "sum(rate(ws_active_connections[5m]))",
            "gauge ws_active_connections is under rate",
        ),
        (
            "histogram_quantile(0.99, sum by (pod) (rate(ws_message_latency_ms_bucket[5m])))",
            "without an aggregation by le",
        ),
        (
            "sum(rate(ws_message_latency_ms[5m]))",
            "has no series of that name",
        ),
        (
            "sum(rate(ws_message_latency_ms_bucket[5m]))",
            "outside histogram_quantile",
        ),
        (
            "sum(rate(ws_active_connections_total[5m]))",
            "is not a metric",
        ),
        (
            "sum(rate(ws_bets_total[$window]))",
            "undefined variable $window",
        ),
        ("summ(rate(ws_bets_total[5m]))", "unknown function summ"),
    ];
    let rule = self::rule();
    for (expr, expected) in cases {
        let mut d = dashboard.clone();
        let target = d["panels"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|p| p["targets"].is_array())
            .unwrap();
        target["targets"][0]["expr"] = expr.into();
        let problems = query_problems(&d, &rule, &exported);
        assert!(
            problems.len() == 1 && problems[0].contains(expected),
            "{expr}: expected {expected:?}, got {problems:?}"
        );
    }
    dashboard["templating"]["list"][1]["query"]["query"] =
        "label_values(ws_connections, namespace)".into();
    let problems = query_problems(&dashboard, &rule, &exported);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ws_connections is not a metric")),
        "{problems:?}"
    );
}

#[test]
fn the_tokenizer_finds_metrics_and_only_metrics() {
    let p = parse(
        r#"histogram_quantile(0.99, sum by (namespace, le) (label_replace(rate(a_bucket{pod=~"x-(.+)", b="}", namespace="${ns}"}[$__rate_interval]), "f", "$1", "pod", "(.+)")))
          > 100 and on (namespace) (sum(b_total offset 5m) or vector($target)) # c_total
          unless max(c) by (le) > bool 1"#,
    )
    .unwrap();
    let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b_total", "c"]);
    assert_eq!(
        p.metrics[0].calls,
        ["histogram_quantile", "sum", "label_replace", "rate"]
    );
    assert_eq!(p.metrics[1].calls, ["", "sum"]);
    assert_eq!(p.metrics[2].calls, ["max"]);
    assert_eq!(
        p.variables,
        BTreeSet::from(["__rate_interval", "ns", "target"].map(String::from))
    );
    assert!(parse("sum(rate(x[5m])").is_err());
    assert!(parse("x{a=\"b\"").is_err());
}

/// GitHub's anchors for the `##` sections of docs/operations.md.
fn operations_anchors() -> BTreeSet<String> {
    read("docs/operations.md")
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn the_rule_file_is_a_prometheus_rule_with_runbooks() {
    let rule = rule();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(rule["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    let anchors = operations_anchors();
    let duration = Regex::new(r"^([0-9]+(ms|s|m|h|d|w|y))+$").unwrap();
    let alert_name = Regex::new(r"^[A-Z][A-Za-z0-9]+$").unwrap();
    let mut alerts = BTreeSet::new();
    let mut groups = BTreeSet::new();
    let groups_list = rule["spec"]["groups"].as_array().unwrap();
    assert!(!groups_list.is_empty());
    for g in groups_list {
        let name = g["name"].as_str().unwrap();
        assert!(groups.insert(name), "group {name} twice");
        let rules = g["rules"].as_array().unwrap();
        assert!(!rules.is_empty(), "group {name} has no rules");
        for r in rules {
            let alert = r["alert"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}: no alert"));
            assert!(alert_name.is_match(alert), "{alert}");
            assert!(alerts.insert(alert), "alert {alert} twice");
            assert!(
                r["expr"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "{alert}: expr"
            );
            let for_ = r["for"]
                .as_str()
                .unwrap_or_else(|| panic!("{alert}: no for"));
            assert!(duration.is_match(for_), "{alert}: for {for_}");
            let severity = r["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["critical", "warning", "info"].contains(&severity),
                "{alert}: severity {severity:?}"
            );
            for key in ["summary", "description"] {
                assert!(
                    r["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.trim().is_empty()),
                    "{alert}: annotations.{key}"
                );
            }
            let runbook = r["annotations"]["runbook_url"].as_str().unwrap_or("");
            let anchor = runbook
                .split_once("docs/operations.md#")
                .map(|(_, a)| a)
                .unwrap_or_else(|| panic!("{alert}: runbook_url {runbook:?}"));
            assert!(
                anchors.contains(anchor),
                "{alert}: no section #{anchor} in {anchors:?}"
            );
        }
    }
    assert!(alerts.len() >= 8, "{alerts:?}");
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_for_the_operators_pods() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(d["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty() && u.len() <= 40));
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");

    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel id {} twice",
            p["id"]
        );
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{}",
            p["title"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}", p["title"]);
        let refs: BTreeSet<&str> = targets
            .iter()
            .map(|t| t["refId"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), targets.len(), "{}: refIds", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }

    // The fleet variable and the pod matchers follow the names the operator gives its
    // Deployments (pods are <deployment>-<replicaset hash>-<suffix>).
    let minimal: Value = serde_saphyr::from_str(&read("examples/minimal.yaml")).unwrap();
    let fleet: GameFleet = serde_json::from_value(minimal).unwrap();
    let fleet_name = fleet.metadata.name.clone().unwrap();
    let p99_default = fleet.spec.latency.p99_target_ms;
    let objects = gamefleet_operator::render::render_fleet(fleet).unwrap();
    let gateway_pod = format!(
        "{}-7c9d6b5f4d-x8k2q",
        objects.gateway.metadata.name.unwrap()
    );
    let engine_pod = format!("{}-5b8f7c9d6f-q2w7z", objects.engine.metadata.name.unwrap());
    let extract = var("fleet")["regex"].as_str().unwrap();
    let extract = Regex::new(extract.trim_matches('/')).unwrap();
    assert_eq!(&extract.captures(&gateway_pod).unwrap()[1], fleet_name);
    assert!(!extract.is_match(&engine_pod));
    let (targets, _) = dashboard_exprs(&d);
    let matcher = Regex::new(r#"pod=~"([^"]+)""#).unwrap();
    let mut matchers = BTreeSet::new();
    for expr in &targets {
        for m in matcher.captures_iter(expr) {
            matchers.insert(m[1].replace("$fleet", &fleet_name));
        }
    }
    assert_eq!(matchers.len(), 2, "{matchers:?}");
    for m in &matchers {
        let re = Regex::new(&format!("^(?:{m})$")).unwrap();
        assert!(
            re.is_match(&gateway_pod) != re.is_match(&engine_pod),
            "{m} must match exactly one of {gateway_pod}, {engine_pod}"
        );
    }

    // The latency target shown is the fleet's default, as in the delivery alert.
    let target = var("p99_target_ms")["query"].as_str().unwrap();
    assert_eq!(target, p99_default.to_string());
    let (_, p99_alert) = rule_exprs(&rule())
        .into_iter()
        .find(|(a, _)| a == "GameFleetDeliveryP99OverTarget")
        .unwrap();
    assert!(
        p99_alert.contains(&format!("> {p99_default}\n")),
        "{p99_alert}"
    );
}
