//! One pod: its containers as process groups, probes, restarts, status and
//! graceful termination.

use super::dns::MountHosts;
use super::node::{signal_group, Kubelet, Signal};
use super::probe::{self, Timing};
use crate::apiserver::{DeleteOpts, WriteOpts};
use crate::ctx::{record_event, Ctx, EventType, Reason};
use crate::meta::{condition, meta_str, now, str_list};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const MANAGER: &str = "kubesim-kubelet";

/// `registry/name:tag@digest` -> `registry/name`.
pub fn split_image(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Picks the executable and argv for a container.
pub fn resolve_program(
    images: &BTreeMap<String, PathBuf>,
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<(PathBuf, Vec<String>), String> {
    let repo = split_image(image);
    let mapped = images
        .iter()
        .filter(|(suffix, _)| repo.ends_with(suffix.as_str()))
        .max_by_key(|(suffix, _)| suffix.len())
        .map(|(_, p)| p.clone());
    match (command.split_first(), mapped) {
        (Some((first, rest)), Some(bin))
            if basename(first) == bin.file_name().and_then(|f| f.to_str()).unwrap_or_default() =>
        {
            Ok((bin, rest.iter().chain(args).cloned().collect()))
        }
        (Some((first, rest)), mapped) => {
            let found = if first.starts_with('/') && Path::new(first).is_file() {
                Some(PathBuf::from(first))
            } else if !first.contains('/') {
                crate::locate::find_in_path(first)
            } else {
                None
            };
            match (found, mapped) {
                (Some(p), _) => Ok((p, rest.iter().chain(args).cloned().collect())),
                (None, Some(bin)) => Ok((bin, rest.iter().chain(args).cloned().collect())),
                (None, None) => Err(format!(
                    "image {image:?} is not mapped to a binary and command {first:?} was not found"
                )),
            }
        }
        (None, Some(bin)) => Ok((bin, args.to_vec())),
        (None, None) => Err(format!(
            "image {image:?} is not mapped to a binary (configure ClusterConfig::image)"
        )),
    }
}

/// Expands `$(VAR)` references as the kubelet does.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (k, v) in env.iter().rev() {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

/// Resolves a container's environment (env, envFrom, downward API).
fn build_env(
    k: &Kubelet,
    ctx: &Ctx,
    pod: &Value,
    c: &Value,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = meta_str(pod, "namespace");
    let lookup = |kind: &str, name: &str| lookup_env_source(k, ctx, ns, kind, name);
    let mut env = env_from_sources(c, &lookup)?;
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default().to_string();
        let Some(value) = env_var_value(e, &env, pod, pod_ip, &lookup)? else {
            continue;
        };
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    }
    Ok(env)
}

/// The secret or config map (`kind` is `"secret"` or `"configmap"`) an env source names.
fn lookup_env_source(k: &Kubelet, ctx: &Ctx, ns: &str, kind: &str, name: &str) -> Option<Value> {
    let def = if kind == "secret" {
        k.api.registry.find("", "v1", "secrets")
    } else {
        k.api.registry.find("", "v1", "configmaps")
    };
    def.and_then(|d| ctx.api.get(&d, ns, name).ok())
}

/// A secret's base64 value as text (empty when it is not base64 of UTF-8).
fn decode_secret_value(s: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// The variables of a container's `envFrom`: every key of each config map or secret, prefixed.
fn env_from_sources(
    c: &Value,
    lookup: &impl Fn(&str, &str) -> Option<Value>,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = vec![];
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or_default();
        for (kind, key) in [("configmap", "configMapRef"), ("secret", "secretRef")] {
            if let Some(r) = from.get(key) {
                let name = r["name"].as_str().unwrap_or_default();
                match lookup(kind, name) {
                    Some(obj) => {
                        for (dk, dv) in obj["data"].as_object().into_iter().flatten() {
                            let v = dv.as_str().unwrap_or_default();
                            env.push((
                                format!("{prefix}{dk}"),
                                if kind == "secret" {
                                    decode_secret_value(v)
                                } else {
                                    v.to_string()
                                },
                            ));
                        }
                    }
                    None if r["optional"] == true => {}
                    None => return Err(format!("{kind} {name:?} not found")),
                }
            }
        }
    }
    Ok(env)
}

/// The value of one `env` entry given the variables before it; `None` when it names a missing
/// optional key (the variable is then left out).
fn env_var_value(
    e: &Value,
    env: &[(String, String)],
    pod: &Value,
    pod_ip: &str,
    lookup: &impl Fn(&str, &str) -> Option<Value>,
) -> Result<Option<String>, String> {
    let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
        expand(v, env)
    } else if let Some(f) = e
        .pointer("/valueFrom/fieldRef/fieldPath")
        .and_then(Value::as_str)
    {
        field_ref_value(pod, f, pod_ip)?
    } else if let Some(r) = e
        .pointer("/valueFrom/secretKeyRef")
        .or_else(|| e.pointer("/valueFrom/configMapKeyRef"))
    {
        let kind = if e.pointer("/valueFrom/secretKeyRef").is_some() {
            "secret"
        } else {
            "configmap"
        };
        return key_ref_value(kind, r, lookup);
    } else if e.pointer("/valueFrom/resourceFieldRef").is_some() {
        "0".to_string()
    } else {
        String::new()
    };
    Ok(Some(value))
}

/// A downward-API `fieldRef`: the pod field at `path`.
fn field_ref_value(pod: &Value, path: &str, pod_ip: &str) -> Result<String, String> {
    Ok(match path {
        "metadata.name" => meta_str(pod, "name").to_string(),
        "metadata.namespace" => meta_str(pod, "namespace").to_string(),
        "metadata.uid" => meta_str(pod, "uid").to_string(),
        "status.podIP" => pod_ip.to_string(),
        "status.hostIP" => "127.0.0.1".to_string(),
        "spec.nodeName" => "kubesim".to_string(),
        "spec.serviceAccountName" => pod
            .pointer("/spec/serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string(),
        other => {
            let (map, key) = if let Some(k) = other.strip_prefix("metadata.labels['") {
                ("labels", k.trim_end_matches("']"))
            } else if let Some(k) = other.strip_prefix("metadata.annotations['") {
                ("annotations", k.trim_end_matches("']"))
            } else {
                return Err(format!("unsupported fieldRef {other:?}"));
            };
            pod["metadata"][map][key]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    })
}

/// A `secretKeyRef`/`configMapKeyRef` (`r`): the key's value, `None` if it is missing but
/// optional.
fn key_ref_value(
    kind: &str,
    r: &Value,
    lookup: &impl Fn(&str, &str) -> Option<Value>,
) -> Result<Option<String>, String> {
    let (obj_name, key) = (
        r["name"].as_str().unwrap_or_default(),
        r["key"].as_str().unwrap_or_default(),
    );
    match lookup(kind, obj_name).and_then(|o| o["data"][key].as_str().map(String::from)) {
        Some(v) if kind == "secret" => Ok(Some(decode_secret_value(&v))),
        Some(v) => Ok(Some(v)),
        None if r["optional"] == true => Ok(None),
        None => Err(format!("{kind} {obj_name:?} has no key {key:?}")),
    }
}

#[derive(Clone, Debug)]
enum State {
    Waiting(String, String),
    Running(String),
    Terminated {
        code: i32,
        reason: String,
        started: String,
        finished: String,
    },
}

struct Ctr {
    spec: Value,
    name: String,
    child: Option<Child>,
    pgid: Option<i32>,
    state: State,
    last: Option<Value>,
    restarts: i64,
    ready: bool,
    next_start: Instant,
    backoff: Duration,
    probes: Vec<tokio::task::JoinHandle<()>>,
    done: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum ProbeKind {
    Readiness,
    Liveness,
}

fn state_json(s: &State) -> Value {
    match s {
        State::Waiting(reason, message) => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        State::Running(t) => json!({"running": {"startedAt": t}}),
        State::Terminated {
            code,
            reason,
            started,
            finished,
        } => {
            json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished}})
        }
    }
}

struct PodRt {
    k: Arc<Kubelet>,
    ctx: Arc<Ctx>,
    pod: Value,
    ns: String,
    name: String,
    ip: String,
    workdir: PathBuf,
    /// The pod's hosts file, mounted over `/etc/hosts` for its containers.
    hosts: Option<PathBuf>,
    probe_tx: mpsc::Sender<(usize, ProbeKind, bool)>,
}

impl PodRt {
    fn event(&self, type_: EventType, reason: Reason, msg: &str) {
        record_event(
            &self.ctx.api,
            &self.ctx.events,
            &self.pod,
            type_,
            reason,
            msg,
            "kubelet",
        );
    }

    /// Starts a container, or notes why it could not start (retried later).
    fn start(&self, idx: usize, c: &mut Ctr) {
        let Some((program, mut cmd)) = self.command(c) else {
            return;
        };
        match cmd.spawn() {
            Ok(child) => self.running(idx, c, child),
            Err(e) => {
                let msg = format!("starting {}: {e}", program.display());
                c.state = State::Waiting("RunContainerError".into(), msg.clone());
                c.next_start = Instant::now() + Duration::from_secs(2);
                self.event(EventType::Warning, Reason::Failed, &msg);
            }
        }
    }

    /// The container's program and its process setup (environment, own
    /// process group, the pod's hosts file); `None` when it cannot be built.
    fn command(&self, c: &mut Ctr) -> Option<(PathBuf, Command)> {
        let env = match build_env(&self.k, &self.ctx, &self.pod, &c.spec, &self.ip) {
            Ok(e) => e,
            Err(msg) => {
                c.state = State::Waiting("CreateContainerConfigError".into(), msg.clone());
                c.next_start = Instant::now() + Duration::from_secs(1);
                self.event(EventType::Warning, Reason::Failed, &format!("Error: {msg}"));
                return None;
            }
        };
        let command: Vec<String> = str_list(&c.spec["command"])
            .iter()
            .map(|s| expand(s, &env))
            .collect();
        let mut args: Vec<String> = str_list(&c.spec["args"])
            .iter()
            .map(|s| expand(s, &env))
            .collect();
        let image = c.spec["image"].as_str().unwrap_or_default().to_string();
        let (program, argv) = match resolve_program(&self.k.images, &image, &command, &args) {
            Ok(p) => p,
            Err(msg) => {
                c.state = State::Waiting("ErrImagePull".into(), msg.clone());
                c.next_start = Instant::now() + Duration::from_secs(2);
                self.event(EventType::Warning, Reason::Failed, &msg);
                return None;
            }
        };
        args = argv;
        if program.file_name().and_then(|f| f.to_str()) == Some("redis-server")
            && !args.iter().any(|a| a == "--bind")
        {
            // redis listens on every interface by default; pods must keep to their own IP.
            // Persistence is the manifest's: its files land in the pod's working directory.
            args.extend(["--bind".into(), self.ip.clone()]);
        }
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.workdir)
            .env("KUBECONFIG", &self.k.kubeconfig)
            .env("HOSTNAME", &self.name)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mount = match self.hosts.as_deref().map(MountHosts::new).transpose() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%e, pod = %self.name, "pod hosts file path; Service names will not resolve");
                None
            }
        };
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Own process group (so signals reach the whole container), and
                // die with the simulator even if it is SIGKILLed.
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(m) = &mount {
                    m.enter()?;
                }
                Ok(())
            });
        }
        Some((program, cmd))
    }

    /// A container whose process started: its logs captured, its probes running.
    fn running(&self, idx: usize, c: &mut Ctr, mut child: Child) {
        let pid = child.id().map(|p| p as i32);
        if let Some(pg) = pid {
            self.k
                .pgids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pg);
        }
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = self.k.logs.clone();
            let (ns, name) = (self.ns.clone(), self.name.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(out).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    logs.append(&ns, &name, &line);
                }
            });
        }
        c.child = Some(child);
        c.pgid = pid;
        c.state = State::Running(now());
        c.ready = c.spec.get("readinessProbe").is_none();
        self.event(
            EventType::Normal,
            Reason::Started,
            &format!("Started container {}", c.name),
        );
        for (key, kind) in [
            ("readinessProbe", ProbeKind::Readiness),
            ("livenessProbe", ProbeKind::Liveness),
        ] {
            if let Some(p) = c.spec.get(key).cloned() {
                c.probes.push(tokio::spawn(probe_loop(
                    p,
                    c.spec.clone(),
                    self.ip.clone(),
                    idx,
                    kind,
                    self.probe_tx.clone(),
                )));
            }
        }
    }

    fn stop_probes(c: &mut Ctr) {
        for p in c.probes.drain(..) {
            p.abort();
        }
    }

    async fn write_status(&self, ctrs: &[Ctr], phase: &str, terminating: bool) {
        let statuses: Vec<Value> = ctrs
            .iter()
            .map(|c| {
                let mut s = json!({"name": c.name, "image": c.spec["image"], "imageID": "", "ready": c.ready && !terminating,
                    "restartCount": c.restarts, "started": matches!(c.state, State::Running(_)), "state": state_json(&c.state)});
                if let Some(l) = &c.last {
                    s["lastState"] = l.clone();
                }
                s
            })
            .collect();
        let all_ready = !terminating
            && ctrs
                .iter()
                .all(|c| c.ready && matches!(c.state, State::Running(_)));
        let cur = match self.ctx.api.get(&self.ctx.pods, &self.ns, &self.name) {
            Ok(p) => p,
            Err(_) => return,
        };
        let reason = if all_ready { "" } else { "ContainersNotReady" };
        let mut conds = vec![
            condition(&cur, "PodScheduled", true, "", ""),
            condition(&cur, "Initialized", true, "", ""),
            condition(&cur, "ContainersReady", all_ready, reason, ""),
            condition(&cur, "Ready", all_ready, reason, ""),
        ];
        for c in conds.iter_mut() {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastUpdateTime");
                if o.get("reason").and_then(Value::as_str) == Some("") {
                    o.remove("reason");
                }
                if o.get("message").and_then(Value::as_str) == Some("") {
                    o.remove("message");
                }
            }
        }
        let mut status = json!({"phase": phase, "conditions": conds, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.ip, "podIPs": [{"ip": self.ip}], "containerStatuses": statuses, "qosClass": "BestEffort",
            "startTime": cur.pointer("/status/startTime").cloned().unwrap_or(json!(now()))});
        if cur.get("status") == Some(&status) {
            return;
        }
        if let Some(o) = status.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        let r = self.ctx.api.write_existing(
            &self.ctx.pods,
            &self.ns,
            &self.name,
            "status",
            &WriteOpts::manager(MANAGER),
            move |cur| {
                let mut n = cur.clone();
                n["status"] = status;
                if let Some(m) = n.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                Ok(n)
            },
        );
        if let Err(e) = r {
            tracing::debug!(%e, pod = %self.name, "pod status");
        }
    }
}

async fn probe_loop(
    p: Value,
    container: Value,
    ip: String,
    idx: usize,
    kind: ProbeKind,
    tx: mpsc::Sender<(usize, ProbeKind, bool)>,
) {
    let t = Timing::of(&p);
    tokio::time::sleep(t.initial_delay).await;
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    loop {
        let ok = probe::run(&p, &container, &ip, t.timeout).await;
        if ok {
            ok_run += 1;
            fail_run = 0;
        } else {
            fail_run += 1;
            ok_run = 0;
        }
        let verdict = if ok_run >= t.success_threshold {
            Some(true)
        } else if fail_run >= t.failure_threshold {
            Some(false)
        } else {
            None
        };
        if let Some(v) = verdict {
            if tx.send((idx, kind, v)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(t.period).await;
    }
}

fn restart_allowed(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// The pod's containers, none started yet.
fn containers(pod: &Value) -> Vec<Ctr> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Ctr::new)
        .collect()
}

/// The pod phase its containers add up to.
fn pod_phase(ctrs: &[Ctr]) -> &'static str {
    if ctrs.iter().all(|c| c.done) {
        if ctrs
            .iter()
            .all(|c| matches!(c.state, State::Terminated { code: 0, .. }))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if ctrs.iter().any(|c| c.child.is_some()) || ctrs.iter().any(|c| c.restarts > 0) {
        "Running"
    } else {
        "Pending"
    }
}

/// A process's exit code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

impl Ctr {
    fn new(spec: &Value) -> Self {
        Self {
            spec: spec.clone(),
            name: spec["name"].as_str().unwrap_or_default().to_string(),
            child: None,
            pgid: None,
            state: State::Waiting("ContainerCreating".into(), String::new()),
            last: None,
            restarts: 0,
            ready: false,
            next_start: Instant::now(),
            backoff: Duration::from_millis(500),
            probes: vec![],
            done: false,
        }
    }
}

impl PodRt {
    /// The pod's IP, working directory and hosts file.
    fn new(
        k: Arc<Kubelet>,
        ctx: Arc<Ctx>,
        pod: Value,
        probe_tx: mpsc::Sender<(usize, ProbeKind, bool)>,
    ) -> Self {
        let ns = meta_str(&pod, "namespace").to_string();
        let name = meta_str(&pod, "name").to_string();
        let ip = crate::ipalloc::next_pod_ip();
        let workdir = k.pods_dir.join(meta_str(&pod, "uid"));
        if let Err(e) = std::fs::create_dir_all(&workdir) {
            tracing::warn!(%e, "creating pod working directory");
        }
        let uid = meta_str(&pod, "uid").to_string();
        let hosts = k.dns.as_ref().and_then(|dns| {
            let path = k.pods_dir.join(format!("{uid}.hosts"));
            let (services, _) = ctx.api.list(&ctx.services, None);
            match dns.register(&uid, &ns, path.clone(), &services) {
                Ok(()) => Some(path),
                Err(e) => {
                    tracing::warn!(%e, pod = %name, "writing the pod's hosts file; Service names will not resolve");
                    None
                }
            }
        });
        Self {
            k,
            ctx,
            pod,
            ns,
            name,
            ip,
            workdir,
            hosts,
            probe_tx,
        }
    }

    /// SIGTERMs every container; returns when the grace period ends.
    fn begin_termination(&self, ctrs: &mut [Ctr], grace: i64) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(grace.max(0) as u64);
        for c in ctrs.iter_mut() {
            PodRt::stop_probes(c);
            c.ready = false;
            if let Some(pg) = c.pgid {
                signal_group(pg, libc::SIGTERM);
            }
        }
        self.event(
            EventType::Normal,
            Reason::Killing,
            &format!("Stopping container(s) with grace period {grace}s"),
        );
        deadline
    }

    /// Notes a container that exited: its final state, its process group
    /// reaped, and (unless the pod is terminating) a restart after back-off,
    /// or done as the restart policy says.
    fn reap(&self, c: &mut Ctr, now_i: Instant, terminating: bool, policy: &str) {
        let Some(child) = c.child.as_mut() else {
            return;
        };
        let Ok(Some(status)) = child.try_wait() else {
            return;
        };
        let code = exit_code(status);
        let started = match &c.state {
            State::Running(t) => t.clone(),
            _ => now(),
        };
        let reason = if code == 0 { "Completed" } else { "Error" };
        c.state = State::Terminated {
            code,
            reason: reason.into(),
            started,
            finished: now(),
        };
        c.child = None;
        if let Some(pg) = c.pgid.take() {
            // Reap anything left in the group.
            self.k.kill_group(pg);
        }
        c.ready = false;
        PodRt::stop_probes(c);
        if terminating {
            return;
        }
        if restart_allowed(policy, code) {
            c.last = Some(state_json(&c.state));
            c.restarts += 1;
            c.next_start = now_i + c.backoff;
            c.backoff = (c.backoff * 2).min(Duration::from_secs(10));
            c.state = State::Waiting(
                "CrashLoopBackOff".into(),
                format!("back-off restarting failed container {}", c.name),
            );
            self.event(
                EventType::Warning,
                Reason::BackOff,
                &format!(
                    "Back-off restarting container {} (exit code {code})",
                    c.name
                ),
            );
        } else {
            c.done = true;
        }
    }

    /// A probe's verdict: readiness, or a liveness failure that restarts the container.
    fn on_probe(&self, c: &mut Ctr, kind: ProbeKind, ok: bool) {
        match kind {
            ProbeKind::Readiness => c.ready = ok && c.child.is_some(),
            ProbeKind::Liveness if !ok && c.child.is_some() => {
                self.event(
                    EventType::Warning,
                    Reason::Unhealthy,
                    &format!("Liveness probe failed; restarting container {}", c.name),
                );
                if let Some(pg) = c.pgid {
                    signal_group(pg, libc::SIGTERM);
                }
                PodRt::stop_probes(c);
            }
            ProbeKind::Liveness => {}
        }
    }

    /// Kills whatever is left, reaps, and finishes the deletion (unless the
    /// pod is already gone from the API or the cluster is stopping).
    async fn finish(
        &self,
        ctrs: &mut [Ctr],
        signal: &watch::Receiver<Signal>,
        cancel: &CancellationToken,
    ) {
        for c in ctrs.iter_mut() {
            PodRt::stop_probes(c);
            if let Some(pg) = c.pgid.take() {
                self.k.kill_group(pg);
            }
            if let Some(mut child) = c.child.take() {
                let _ = child.kill().await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
        let uid = meta_str(&self.pod, "uid");
        if let Some(dns) = &self.k.dns {
            dns.forget(uid);
        }
        if *signal.borrow() != Signal::Gone && !cancel.is_cancelled() {
            let opts = DeleteOpts {
                grace_seconds: Some(0),
                precondition_uid: Some(uid.to_string()),
                ..DeleteOpts::default()
            };
            if let Err(e) = self
                .ctx
                .api
                .delete(&self.ctx.pods, &self.ns, &self.name, &opts)
            {
                tracing::debug!(%e, pod = %self.name, "final pod delete");
            }
        }
    }
}

pub async fn run_pod(
    k: Arc<Kubelet>,
    ctx: Arc<Ctx>,
    pod: Value,
    mut signal: watch::Receiver<Signal>,
    cancel: CancellationToken,
) {
    let (probe_tx, mut probe_rx) = mpsc::channel(64);
    let rt = PodRt::new(k, ctx, pod, probe_tx);
    let policy = rt
        .pod
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always")
        .to_string();
    let mut ctrs = containers(&rt.pod);
    if *signal.borrow() == Signal::Run {
        rt.event(
            EventType::Normal,
            Reason::Scheduled,
            &format!("Successfully assigned {}/{} to kubesim", rt.ns, rt.name),
        );
    }
    let mut terminating: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let sig = *signal.borrow();
        match sig {
            Signal::Gone => break,
            Signal::Terminate(grace) if terminating.is_none() => {
                terminating = Some(rt.begin_termination(&mut ctrs, grace));
            }
            _ => {}
        }
        let now_i = Instant::now();
        for (i, c) in ctrs.iter_mut().enumerate() {
            rt.reap(c, now_i, terminating.is_some(), &policy);
            if terminating.is_none() && c.child.is_none() && !c.done && now_i >= c.next_start {
                rt.start(i, c);
            }
        }
        if let Some(deadline) = terminating {
            let all_stopped = ctrs.iter().all(|c| c.child.is_none());
            if all_stopped || now_i >= deadline || cancel.is_cancelled() {
                break;
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        rt.write_status(&ctrs, pod_phase(&ctrs), terminating.is_some())
            .await;
        tokio::select! {
            _ = tick.tick() => {}
            _ = signal.changed() => {}
            Some((idx, kind, ok)) = probe_rx.recv() => {
                if let Some(c) = ctrs.get_mut(idx) {
                    rt.on_probe(c, kind, ok);
                }
            }
        }
    }
    rt.finish(&mut ctrs, &signal, &cancel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_resolution_table() {
        let images: BTreeMap<String, PathBuf> = [
            ("gameserver".to_string(), PathBuf::from("/bin/gameserver")),
            (
                "gamefleet-operator".to_string(),
                PathBuf::from("/bin/gamefleet-operator"),
            ),
        ]
        .into();
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let r =
            resolve_program(&images, "ghcr.io/x/gameserver:1.2", &[], &s(&["gateway"])).unwrap();
        assert_eq!(r, (PathBuf::from("/bin/gameserver"), s(&["gateway"])));
        let r = resolve_program(
            &images,
            "gameserver@sha256:abc",
            &s(&["/usr/local/bin/gameserver", "engine"]),
            &s(&["-v"]),
        )
        .unwrap();
        assert_eq!(r, (PathBuf::from("/bin/gameserver"), s(&["engine", "-v"])));
        let r = resolve_program(
            &images,
            "localhost:5000/gamefleet-operator",
            &[],
            &s(&["run"]),
        )
        .unwrap();
        assert_eq!(r.0, PathBuf::from("/bin/gamefleet-operator"));
        assert!(resolve_program(&images, "nginx:1", &[], &[]).is_err());
        assert_eq!(split_image("localhost:5000/a/b:tag"), "localhost:5000/a/b");
    }

    #[test]
    fn expands_var_references() {
        let env = vec![("POD_IP".to_string(), "127.0.0.9".to_string())];
        assert_eq!(
            expand("--bind=$(POD_IP):80 $(MISSING)", &env),
            "--bind=127.0.0.9:80 $(MISSING)"
        );
    }

    fn exited(code: i32) -> Ctr {
        let mut c = Ctr::new(&json!({"name": "c"}));
        c.state = State::Terminated {
            code,
            reason: String::new(),
            started: String::new(),
            finished: String::new(),
        };
        c.done = true;
        c
    }

    #[test]
    fn pod_phase_from_containers() {
        let fresh = || Ctr::new(&json!({"name": "c", "image": "x"}));
        assert_eq!(pod_phase(&[fresh(), fresh()]), "Pending");
        let mut restarted = fresh();
        restarted.restarts = 1;
        assert_eq!(pod_phase(&[fresh(), restarted]), "Running");
        assert_eq!(pod_phase(&[exited(0), exited(0)]), "Succeeded");
        assert_eq!(pod_phase(&[exited(0), exited(1)]), "Failed");
        assert_eq!(pod_phase(&[exited(0), fresh()]), "Pending");
    }

    #[test]
    fn restart_policy_table() {
        assert!(restart_allowed("Always", 0));
        assert!(restart_allowed("Always", 1));
        assert!(!restart_allowed("OnFailure", 0));
        assert!(restart_allowed("OnFailure", 137));
        assert!(!restart_allowed("Never", 1));
    }

    #[test]
    fn exit_code_of_a_signalled_process_is_128_plus_the_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(libc::SIGKILL)),
            137
        );
    }
}
