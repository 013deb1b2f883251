//! kubesim: a simulated Kubernetes cluster for tests and demos.
//!
//! An API server double (real `kubectl`, `helm` and `kube::Client` talk to it
//! through a generated kubeconfig), the Deployment/ReplicaSet/GC/endpoints
//! controllers, a kubelet that runs pods as local processes on loopback IPs,
//! Services as loopback TCP proxies, and Service names for pods through a
//! per-pod `/etc/hosts` (as root). Not a Kubernetes distribution.

mod apiserver;
pub mod audit;
mod cel;
mod cluster;
mod controllers;
mod ctx;
mod defaults;
mod discovery;
mod error;
mod events;
mod http;
mod ipalloc;
mod kubelet;
mod locate;
mod merge;
mod meta;
mod openapi;
mod protobuf;
mod proxy;
mod registry;
mod schema;
mod selector;
mod ssa;
mod store;
mod table;

pub use cluster::{Cluster, ClusterConfig, Error};
