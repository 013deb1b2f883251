//! kubesim: a simulated Kubernetes cluster for tests and demos.
//!
//! An API server double (real `kubectl`, `helm` and `kube::Client` talk to it
//! through a generated kubeconfig), the Deployment/ReplicaSet/GC/endpoints
//! controllers, a kubelet that runs pods as local processes on loopback IPs,
//! Services as loopback TCP proxies, and Service names for pods through a
//! per-pod `/etc/hosts` (as root). Not a Kubernetes distribution.

pub mod apiserver;
pub mod audit;
pub mod cel;
mod cluster;
pub mod controllers;
pub mod ctx;
pub mod defaults;
pub mod discovery;
pub mod error;
pub mod events;
pub mod http;
pub mod ipalloc;
pub mod kubelet;
mod locate;
pub mod merge;
pub mod meta;
pub mod openapi;
pub mod protobuf;
pub mod proxy;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod ssa;
pub mod store;
pub mod table;

pub use cluster::{Cluster, ClusterConfig, Error};
