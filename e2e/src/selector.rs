//! Label and field selectors (the query-string forms).

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`a=b,c!=d,e in (x,y),f notin (z),g,!h`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

#[derive(Debug, PartialEq, thiserror::Error)]
#[error("invalid selector {0:?}: {1}")]
pub struct SelectorError(pub String, pub &'static str);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_set(s: &str, whole: &str) -> Result<Vec<String>, SelectorError> {
    let s = s.trim();
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| SelectorError(whole.into(), "set must be in parentheses"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = vec![];
        for term in split_top(s) {
            let req = if let Some((k, v)) = term.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once(" notin ") {
                Req::NotIn(k.trim().into(), parse_set(v, s)?)
            } else if let Some((k, v)) = term.split_once(" in ") {
                Req::In(k.trim().into(), parse_set(v, s)?)
            } else if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if term.contains(' ') || term.contains('(') {
                return Err(SelectorError(s.into(), "unrecognised requirement"));
            } else {
                Req::Exists(term)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Builds a selector from a `LabelSelector` object (matchLabels + matchExpressions).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = vec![];
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Req::Eq(k.clone(), v.as_str().unwrap_or_default().into()));
            }
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str) {
                Some("In") => reqs.push(Req::In(key, values)),
                Some("NotIn") => reqs.push(Req::NotIn(key, values)),
                Some("Exists") => reqs.push(Req::Exists(key)),
                Some("DoesNotExist") => reqs.push(Req::NotExists(key)),
                _ => {}
            }
        }
        Self(reqs)
    }

    pub fn matches_map(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }

    /// Matches against `metadata.labels` of an object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_map(&labels_of(obj))
    }
}

pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = vec![];
        for term in split_top(s) {
            let (path, eq, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(SelectorError(s.into(), "field selectors need = or !="));
            };
            reqs.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = Some(obj);
            for seg in path.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_table() {
        let obj = json!({"metadata": {"labels": {"app": "gw", "tier": "edge"}}});
        let cases = [
            ("", true),
            ("app=gw", true),
            ("app==gw", true),
            ("app=engine", false),
            ("app!=engine", true),
            ("app in (gw, engine)", true),
            ("app notin (gw)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=gw,tier in (edge),!missing", true),
            ("app=gw,tier=core", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&obj), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in gw").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn label_selector_from_object() {
        let sel = json!({"matchLabels": {"app": "gw"},
            "matchExpressions": [{"key": "v", "operator": "In", "values": ["1", "2"]}]});
        let s = LabelSelector::from_object(&sel);
        assert!(s.matches(&json!({"metadata": {"labels": {"app": "gw", "v": "2"}}})));
        assert!(!s.matches(&json!({"metadata": {"labels": {"app": "gw", "v": "3"}}})));
    }

    #[test]
    fn field_selector_table() {
        let obj = json!({"metadata": {"name": "p1", "namespace": "ns"},
            "status": {"phase": "Running"}, "involvedObject": {"uid": "u1"}});
        let cases = [
            ("metadata.name=p1", true),
            ("metadata.name==p2", false),
            ("status.phase!=Running", false),
            ("metadata.namespace=ns,involvedObject.uid=u1", true),
            ("spec.nodeName=", true),
        ];
        for (sel, want) in cases {
            assert_eq!(
                FieldSelector::parse(sel).unwrap().matches(&obj),
                want,
                "{sel}"
            );
        }
        assert!(FieldSelector::parse("metadata.name").is_err());
    }
}
