//! Service DNS for pod processes: each container starts in its own mount
//! namespace with a per-pod hosts file bind-mounted over `/etc/hosts` (the
//! host's file is untouched). glibc reads `/etc/hosts` on every lookup, so
//! rewriting a pod's file in place (same inode: the bind mount follows the
//! inode, not the name) makes Service changes visible to running processes.

use super::hosts::{hosts_file, resolvable, ServiceName};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const HOSTS: &str = "/etc/hosts";

struct PodHosts {
    namespace: String,
    path: PathBuf,
    written: String,
}

pub struct Dns {
    /// The host's `/etc/hosts`, the head of every pod's file.
    base: String,
    /// Pod uid -> its hosts file.
    pods: Mutex<HashMap<String, PodHosts>>,
}

impl Dns {
    /// Service names for pods, or `None` (with a warning) where this process
    /// cannot create mount namespaces (not root, or a restricted container).
    pub fn detect(scratch: &Path) -> Option<Dns> {
        let base = std::fs::read_to_string(HOSTS).unwrap_or_default();
        match probe(scratch) {
            Ok(()) => Some(Dns {
                base,
                pods: Mutex::new(HashMap::new()),
            }),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "Service names will not resolve in pods (a private mount namespace for their \
                     /etc/hosts is unavailable; run as root for it): pods must name Services by cluster IP"
                );
                None
            }
        }
    }

    /// Writes the pod's hosts file and keeps it current until [`Dns::forget`].
    pub fn register(
        &self,
        uid: &str,
        namespace: &str,
        path: PathBuf,
        services: &[Value],
    ) -> std::io::Result<()> {
        let text = hosts_file(&self.base, &resolvable(services), namespace);
        rewrite_in_place(&path, &text)?;
        self.lock().insert(
            uid.to_string(),
            PodHosts {
                namespace: namespace.to_string(),
                path,
                written: text,
            },
        );
        Ok(())
    }

    pub fn forget(&self, uid: &str) {
        if let Some(p) = self.lock().remove(uid) {
            let _ = std::fs::remove_file(p.path);
        }
    }

    /// Brings every pod's file in line with the Services (only changed files are written).
    pub fn refresh(&self, services: &[Value]) {
        let names: Vec<ServiceName> = resolvable(services);
        let mut pods = self.lock();
        for p in pods.values_mut() {
            let text = hosts_file(&self.base, &names, &p.namespace);
            if text == p.written {
                continue;
            }
            match rewrite_in_place(&p.path, &text) {
                Ok(()) => p.written = text,
                Err(e) => {
                    tracing::warn!(%e, path = %p.path.display(), "updating a pod's hosts file")
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodHosts>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Truncate and write on the same inode: a rename would leave running
/// processes' bind mounts on the old file.
fn rewrite_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// The `pre_exec` half: arguments prepared before fork, so the child only
/// makes system calls.
pub struct MountHosts {
    source: CString,
    target: CString,
    root: CString,
}

impl MountHosts {
    pub fn new(source: &Path) -> std::io::Result<Self> {
        let c = |b: &[u8]| {
            CString::new(b).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        };
        Ok(Self {
            source: c(source.as_os_str().as_bytes())?,
            target: c(HOSTS.as_bytes())?,
            root: c(b"/")?,
        })
    }

    /// In the child between fork and exec: a private mount namespace (so
    /// nothing propagates to the host) with the pod's file over `/etc/hosts`.
    ///
    /// # Safety
    /// Only async-signal-safe system calls; call it only from `pre_exec`.
    pub unsafe fn enter(&self) -> std::io::Result<()> {
        let null = std::ptr::null();
        // SAFETY: plain system calls on NUL-terminated strings owned by self.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    null,
                    self.root.as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    self.source.as_ptr(),
                    self.target.as_ptr(),
                    null,
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Starts `true` the way a pod's process starts, to learn whether mount
/// namespaces work here.
fn probe(scratch: &Path) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(scratch)?;
    let file = scratch.join("hosts-probe");
    rewrite_in_place(&file, "")?;
    let mount = MountHosts::new(&file)?;
    let program = crate::locate::find_in_path("true").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no `true` program in PATH")
    })?;
    let mut cmd = std::process::Command::new(program);
    // SAFETY: `enter` makes only system calls.
    unsafe {
        cmd.pre_exec(move || mount.enter());
    }
    let status = cmd.status();
    let _ = std::fs::remove_file(&file);
    match status? {
        s if s.success() => Ok(()),
        s => Err(std::io::Error::other(format!("probe exited with {s}"))),
    }
}
