//! The HTTP face of the API server: path parsing, content negotiation,
//! list/watch streaming. Semantics live in `apiserver`.

use crate::apiserver::{ApiServer, DeleteOpts, Deleted, PatchType, WriteOpts};
use crate::discovery;
use crate::error::ApiError;
use crate::kubelet::LogStore;
use crate::registry::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind};
use crate::table::{self, Include};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub struct AppState {
    pub api: Arc<ApiServer>,
    pub logs: Arc<LogStore>,
    pub bookmark_interval: Duration,
    pub audit: Arc<crate::audit::AuditLog>,
}

pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &e.status())
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let path = uri.path().to_string();
    tracing::debug!(%method, %path, ?query, "request");
    let watch = matches!(
        query.get("watch").map(String::as_str),
        Some("true") | Some("1")
    );
    if let Some(key) =
        crate::audit::request_key(crate::audit::user(&headers), &method, &path, watch)
    {
        state.audit.record(key);
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let body = if !body.is_empty() && ct.contains("protobuf") {
        // Typed clients (helm's release storage, kubectl create) send protobuf.
        match crate::protobuf::decode(&body) {
            Ok(v) => Bytes::from(v.to_string()),
            Err(msg) => return error_response(&ApiError::unsupported_media(msg)),
        }
    } else if !body.is_empty() && ct.contains("cbor") {
        return error_response(&ApiError::unsupported_media(format!(
            "the body of the request was in an unknown format ({ct}); accepted: application/json"
        )));
    } else {
        body
    };
    match route(&state, &method, &path, &query, &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, error = %e, "request failed");
            error_response(&e)
        }
    }
}

fn decode(s: &str) -> Option<String> {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A parsed resource path.
#[derive(Clone)]
struct Target {
    def: ResourceDef,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

async fn route(
    state: &Arc<AppState>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(r) = non_resource(&state.api, &segs, headers) {
        return r;
    }
    let req = Req {
        state,
        path,
        query,
        headers,
        body,
        t: target(&state.api, &segs, path)?,
        opts: write_opts(query, headers),
        as_table: accept(headers).contains("as=Table"),
        include: match query.get("includeObject").map(String::as_str) {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        },
    };
    let api = &state.api;
    let (t, opts) = (&req.t, &req.opts);
    match (method.clone(), t.name.as_deref(), t.sub.as_deref()) {
        (Method::GET, None, _) => get_collection(&req),
        (Method::GET, Some(name), None) | (Method::GET, Some(name), Some("status")) => {
            get_object(&req, name)
        }
        (Method::GET, Some(name), Some("scale")) => Ok(json_response(
            StatusCode::OK,
            &api.get_scale(&t.def, &t.ns, name)?,
        )),
        (Method::GET, Some(name), Some("log")) if t.def.storage == "core/pods" => {
            get_log(&req, name)
        }
        (Method::POST, None, None) => {
            let obj = crate::apiserver::parse_body(body, false)?;
            let out = api.create(&t.def, &t.ns, obj, opts)?;
            Ok(json_response(StatusCode::CREATED, &out))
        }
        (Method::POST, Some(name), Some("eviction")) if t.def.storage == "core/pods" => {
            api.delete(&t.def, &t.ns, name, &DeleteOpts::default())?;
            Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ))
        }
        (Method::PUT, Some(name), sub @ (None | Some("status"))) => {
            let obj = crate::apiserver::parse_body(body, false)?;
            let out = api.update(&t.def, &t.ns, name, obj, sub.unwrap_or_default(), opts)?;
            Ok(json_response(StatusCode::OK, &out))
        }
        (Method::PUT, Some(name), Some("scale")) => {
            let scale = crate::apiserver::parse_body(body, false)?;
            let out = api.write_scale(&t.def, &t.ns, name, opts, |_| Ok(scale))?;
            Ok(json_response(StatusCode::OK, &out))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status") | Some("scale"))) => {
            patch(&req, name, sub)
        }
        (Method::DELETE, Some(name), None) => {
            let dopts = delete_opts(query, body)?;
            match api.delete(&t.def, &t.ns, name, &dopts)? {
                Deleted::Removed(obj) => Ok(json_response(StatusCode::OK, &obj)),
                Deleted::Pending(obj) => Ok(json_response(StatusCode::OK, &obj)),
            }
        }
        (Method::DELETE, None, None) => delete_collection(&req),
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        ))),
    }
}

/// A request for a resource: what it names and how it wants the answer.
struct Req<'a> {
    state: &'a Arc<AppState>,
    path: &'a str,
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    t: Target,
    opts: WriteOpts,
    as_table: bool,
    include: Include,
}

fn accept(headers: &HeaderMap) -> &str {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Version, health, discovery and OpenAPI paths (`None`: a resource path).
fn non_resource(
    api: &ApiServer,
    segs: &[&str],
    headers: &HeaderMap,
) -> Option<Result<Response, ApiError>> {
    let ok = |v: &Value| json_response(StatusCode::OK, v);
    Some(match segs {
        ["version"] => Ok(ok(&discovery::version())),
        ["healthz"] | ["readyz"] | ["livez"] => Ok((StatusCode::OK, "ok").into_response()),
        ["api"] => Ok(ok(&discovery::api_versions())),
        ["apis"] => Ok(ok(&discovery::group_list(&api.registry))),
        ["api", v] => discovery::resource_list(&api.registry, "", v).map(|v| ok(&v)),
        ["apis", g] => discovery::group(&api.registry, g).map(|v| ok(&v)),
        ["apis", g, v] => discovery::resource_list(&api.registry, g, v).map(|v| ok(&v)),
        ["openapi", "v2"] => {
            let accept = accept(headers);
            // kubectl's v2 client asks for protobuf only and parses whatever comes back as such.
            if accept.contains("protobuf") && !accept.contains("json") {
                Ok((
                    StatusCode::OK,
                    [(
                        header::CONTENT_TYPE,
                        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                    )],
                    crate::openapi::v2_protobuf(&api.registry),
                )
                    .into_response())
            } else {
                Ok(ok(&crate::openapi::v2(&api.registry)))
            }
        }
        ["openapi", "v3"] => Ok(ok(&crate::openapi::v3_root(&api.registry))),
        ["openapi", "v3", rest @ ..] => {
            crate::openapi::v3_group(&api.registry, &rest.join("/")).map(|v| ok(&v))
        }
        _ => return None,
    })
}

/// `/api/v/...` or `/apis/g/v/...`: the resource, namespace, name and subresource.
fn target(api: &ApiServer, segs: &[&str], path: &str) -> Result<Target, ApiError> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Err(ApiError::not_found_named("paths", "", path)),
    };
    let (ns, resource, name, sub) = match rest {
        ["namespaces", ns, res, tail @ ..]
            if !(tail.is_empty() && (*res == "status" || *res == "finalize")) =>
        {
            (
                ns.to_string(),
                *res,
                tail.first().map(|s| s.to_string()),
                tail.get(1).map(|s| s.to_string()),
            )
        }
        [res, tail @ ..] => (
            String::new(),
            *res,
            tail.first().map(|s| s.to_string()),
            tail.get(1).map(|s| s.to_string()),
        ),
        [] => return Err(ApiError::not_found_named("paths", "", path)),
    };
    let def = api.def(group, version, resource)?;
    Ok(Target { def, ns, name, sub })
}

/// A kind's list document.
fn list_json(def: &ResourceDef, rv: u64, items: Vec<Value>) -> Value {
    json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(),
        "metadata": {"resourceVersion": rv.to_string()}, "items": items})
}

/// GET on a collection: a list, a table, or a watch.
fn get_collection(req: &Req) -> Result<Response, ApiError> {
    let (t, query) = (&req.t, req.query);
    let watch = matches!(
        query.get("watch").map(String::as_str),
        Some("true") | Some("1")
    );
    if watch {
        return watch_response(req.state, t.clone(), query, req.as_table, req.include);
    }
    let (items, rv) = list_filtered(&req.state.api, t, query)?;
    if req.as_table {
        return Ok(json_response(
            StatusCode::OK,
            &table::to_table(&t.def, &items, &rv.to_string(), req.include),
        ));
    }
    Ok(json_response(StatusCode::OK, &list_json(&t.def, rv, items)))
}

fn get_object(req: &Req, name: &str) -> Result<Response, ApiError> {
    let t = &req.t;
    let obj = req.state.api.get(&t.def, &t.ns, name)?;
    if req.as_table {
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Ok(json_response(
            StatusCode::OK,
            &table::to_table(&t.def, &[obj], &rv, req.include),
        ));
    }
    Ok(json_response(StatusCode::OK, &obj))
}

/// A pod's logs (`tailLines`, `follow`).
fn get_log(req: &Req, name: &str) -> Result<Response, ApiError> {
    let (state, t, query) = (req.state, &req.t, req.query);
    state.api.get(&t.def, &t.ns, name)?;
    let mut text = state.logs.get(&t.ns, name).unwrap_or_default();
    if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(n);
        text = lines[start..].iter().map(|l| format!("{l}\n")).collect();
    }
    if query.get("follow").is_some_and(|f| f == "true") {
        return Ok(follow_logs(
            state.clone(),
            t.def.clone(),
            t.ns.clone(),
            name.to_string(),
            text,
        ));
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

/// PATCH of an object, its status or its scale.
fn patch(req: &Req, name: &str, sub: Option<&str>) -> Result<Response, ApiError> {
    let (state, t, opts) = (req.state, &req.t, &req.opts);
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ptype = PatchType::from_content_type(ct)
        .ok_or_else(|| ApiError::unsupported_media(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})")))?;
    if ptype == PatchType::Apply && opts.manager.is_empty() {
        return Err(ApiError::bad_request(
            "PATCH: fieldManager is required for apply requests",
        ));
    }
    if sub == Some("scale") {
        return patch_scale(req, name, ptype);
    }
    let (out, created) = state.api.patch(
        &t.def,
        &t.ns,
        name,
        ptype,
        req.body,
        sub.unwrap_or_default(),
        opts,
    )?;
    if created {
        // An apply that creates is also authorized as `create`, as the API server does.
        if let Some(mut key) = crate::audit::request_key(
            crate::audit::user(req.headers),
            &Method::PATCH,
            req.path,
            false,
        ) {
            key.verb = "create".into();
            state.audit.record(key);
        }
    }
    Ok(json_response(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &out,
    ))
}

/// PATCH of a Scale: a JSON patch or a merge patch.
fn patch_scale(req: &Req, name: &str, ptype: PatchType) -> Result<Response, ApiError> {
    let t = &req.t;
    let body = req.body.clone();
    let out = req
        .state
        .api
        .write_scale(&t.def, &t.ns, name, &req.opts, move |mut scale| {
            let patch = crate::apiserver::parse_body(&body, true)?;
            match ptype {
                PatchType::Json => {
                    let p: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut scale, &p)
                        .map_err(|e| ApiError::bad_request(e.to_string()))?;
                }
                _ => json_patch::merge(&mut scale, &patch),
            }
            Ok(scale)
        })?;
    Ok(json_response(StatusCode::OK, &out))
}

/// DELETE on a collection: each matching object; already gone ones are skipped.
fn delete_collection(req: &Req) -> Result<Response, ApiError> {
    let (api, t) = (&req.state.api, &req.t);
    let dopts = delete_opts(req.query, req.body)?;
    let (items, rv) = list_filtered(api, t, req.query)?;
    let mut out = vec![];
    for item in items {
        let name = crate::meta::meta_str(&item, "name").to_string();
        let ns = crate::meta::meta_str(&item, "namespace").to_string();
        match api.delete(&t.def, &ns, &name, &dopts) {
            Ok(Deleted::Removed(o)) | Ok(Deleted::Pending(o)) => out.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(StatusCode::OK, &list_json(&t.def, rv, out)))
}

fn write_opts(query: &HashMap<String, String>, headers: &HeaderMap) -> WriteOpts {
    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| {
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .unwrap_or("unknown")
            .to_string()
    });
    WriteOpts {
        manager,
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        force: query.get("force").is_some_and(|v| v == "true"),
        strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
    }
}

fn delete_opts(query: &HashMap<String, String>, body: &Bytes) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        propagation: query.get("propagationPolicy").cloned(),
        grace_seconds: query.get("gracePeriodSeconds").and_then(|g| g.parse().ok()),
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        ..DeleteOpts::default()
    };
    if !body.is_empty() {
        let b = crate::apiserver::parse_body(body, false)?;
        if let Some(p) = b.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = Some(p.to_string());
        }
        if let Some(g) = b.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_seconds = Some(g);
        }
        if b.get("orphanDependents") == Some(&Value::Bool(true)) {
            o.propagation = Some("Orphan".into());
        }
        o.precondition_uid = b
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.precondition_rv = b
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if b.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"))
        {
            o.dry_run = true;
        }
    }
    Ok(o)
}

struct Filter {
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(t: &Target, query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let ns = (t.def.namespaced && !t.ns.is_empty()).then(|| t.ns.clone());
        Ok(Self { ns, labels, fields })
    }

    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.ns {
            if crate::meta::meta_str(obj, "namespace") != ns {
                return false;
            }
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn list_filtered(
    api: &ApiServer,
    t: &Target,
    query: &HashMap<String, String>,
) -> Result<(Vec<Value>, u64), ApiError> {
    let filter = Filter::new(t, query)?;
    let (items, rv) = api.list(&t.def, filter.ns.as_deref());
    Ok((
        items.into_iter().filter(|o| filter.matches(o)).collect(),
        rv,
    ))
}

struct WatchCtx {
    state: Arc<AppState>,
    def: ResourceDef,
    filter: Filter,
    as_table: bool,
    include: Include,
}

impl WatchCtx {
    fn render(&self, kind: &str, obj: Value) -> Bytes {
        let obj = self.state.api.present(&self.def, obj);
        let obj = if self.as_table {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            table::to_table(&self.def, &[obj], &rv, self.include)
        } else {
            obj
        };
        let mut line = json!({"type": kind, "object": obj}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        let mut line = json!({"type": "BOOKMARK", "object": obj}).to_string();
        line.push('\n');
        Bytes::from(line)
    }

    /// The event (if any) a change produces for this watcher.
    fn event_for(&self, c: &Change) -> Option<Bytes> {
        if c.storage != self.def.storage {
            return None;
        }
        let now = c.kind != ChangeKind::Deleted && self.filter.matches(&c.object);
        let before = match c.kind {
            ChangeKind::Added => false,
            ChangeKind::Deleted => self.filter.matches(&c.object),
            ChangeKind::Modified => c.old.as_ref().is_some_and(|o| self.filter.matches(o)),
        };
        let kind = match (before, now) {
            (false, true) => "ADDED",
            (true, true) => "MODIFIED",
            (true, false) => "DELETED",
            (false, false) => return None,
        };
        Some(self.render(kind, c.object.clone()))
    }
}

/// The watch parameters of a list request's query.
struct WatchParams {
    /// `allowWatchBookmarks=true`: periodic `BOOKMARK` events.
    bookmarks: bool,
    /// `sendInitialEvents=true`: the current objects first, then a bookmark marking their end.
    send_initial: bool,
    timeout: Duration,
    /// The `resourceVersion` to watch from (`None`: from now, after the current objects).
    from: Option<u64>,
}

impl WatchParams {
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let bookmarks = query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true");
        let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1800);
        let from: Option<u64> = match query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(s) => Some(
                s.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
            ),
        };
        Ok(Self {
            bookmarks,
            send_initial,
            timeout: Duration::from_secs(timeout),
            from,
        })
    }
}

/// Where a watch starts: the events to send first, the resourceVersion they end at, and the
/// receiver of every later change.
type WatchOpening = (Vec<Bytes>, u64, broadcast::Receiver<Arc<Change>>);

fn watch_response(
    state: &Arc<AppState>,
    t: Target,
    query: &HashMap<String, String>,
    as_table: bool,
    include: Include,
) -> Result<Response, ApiError> {
    let filter = Filter::new(&t, query)?;
    let params = WatchParams::parse(query)?;
    let ctx = WatchCtx {
        state: state.clone(),
        def: t.def,
        filter,
        as_table,
        include,
    };
    let start = match watch_start(&ctx, &params) {
        Ok(start) => start,
        Err(too_old) => return Ok(too_old_watch_response(&too_old)),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    let interval = state.bookmark_interval;
    tokio::spawn(stream_watch(ctx, params, interval, start, tx));
    Ok(stream_response(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ))
}

/// The initial events of a watch: the changes since its resourceVersion or, without one (or
/// with `sendInitialEvents`), the current objects as `ADDED`.
fn watch_start(ctx: &WatchCtx, params: &WatchParams) -> Result<WatchOpening, TooOld> {
    match params.from {
        Some(from) if !params.send_initial => {
            let (backlog, live) = ctx.state.api.store.watch_from(from).map_err(|e| TooOld {
                from,
                oldest: e.oldest,
            })?;
            let last = backlog.last().map_or(from, |c| c.rv);
            let lines: Vec<Bytes> = backlog.iter().filter_map(|c| ctx.event_for(c)).collect();
            Ok((lines, last, live))
        }
        _ => {
            let (items, at, live) = ctx
                .state
                .api
                .store
                .snapshot_and_subscribe(&ctx.def.storage, ctx.filter.ns.as_deref());
            let mut lines: Vec<Bytes> = items
                .into_iter()
                .filter(|o| ctx.filter.matches(o))
                .map(|o| ctx.render("ADDED", o))
                .collect();
            if params.send_initial {
                lines.push(ctx.bookmark(at, true));
            }
            Ok((lines, at, live))
        }
    }
}

/// A watch asked for history that is no longer kept.
struct TooOld {
    from: u64,
    /// The oldest resourceVersion still kept.
    oldest: u64,
}

/// A watch from a compacted resourceVersion: one `ERROR` event (410 Gone), then the end.
fn too_old_watch_response(too_old: &TooOld) -> Response {
    let status = ApiError::gone(format!(
        "too old resource version: {} ({})",
        too_old.from, too_old.oldest
    ))
    .status();
    let line = format!("{}\n", json!({"type": "ERROR", "object": status}));
    stream_response(futures::stream::once(async move {
        Ok::<_, std::io::Error>(Bytes::from(line))
    }))
}

/// Sends a watch's events until its timeout, the client leaving or the change feed ending.
async fn stream_watch(
    ctx: WatchCtx,
    params: WatchParams,
    interval: Duration,
    (initial, mut last_rv, mut live): WatchOpening,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    for line in initial {
        if tx.send(Ok(line)).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(params.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            _ = tx.closed() => return,
            _ = ticker.tick(), if params.bookmarks => {
                if tx.send(Ok(ctx.bookmark(last_rv, false))).await.is_err() {
                    return;
                }
            }
            msg = live.recv() => match msg {
                Ok(change) => {
                    if change.rv <= last_rv {
                        continue;
                    }
                    last_rv = change.rv;
                    if let Some(line) = ctx.event_for(&change) {
                        if tx.send(Ok(line)).await.is_err() {
                            return;
                        }
                    }
                }
                // Lagged or closed: end the stream; the client re-watches
                // from its last resourceVersion.
                Err(_) => return,
            },
        }
    }
}

/// `kubectl logs -f`: what is there, then new output until the pod is gone.
fn follow_logs(
    state: Arc<AppState>,
    def: ResourceDef,
    ns: String,
    name: String,
    initial: String,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut sent = state.logs.get(&ns, &name).unwrap_or_default().len();
        if tx.send(Ok(Bytes::from(initial))).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = state.logs.get(&ns, &name).unwrap_or_default();
            if now.len() > sent
                && now.is_char_boundary(sent)
                && tx
                    .send(Ok(Bytes::from(now[sent..].to_string())))
                    .await
                    .is_err()
            {
                return;
            }
            // The buffer may have been trimmed; resynchronise on its end.
            sent = now.len();
            if state.api.get(&def, &ns, &name).is_err() || tx.is_closed() {
                return;
            }
        }
    });
    let mut r = stream_response(tokio_stream::wrappers::ReceiverStream::new(rx));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain"),
    );
    r
}

fn stream_response<S>(s: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
