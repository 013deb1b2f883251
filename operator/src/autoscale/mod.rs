//! Autoscaling: HorizontalPodAutoscaler v2 semantics per tier, from live pod metrics (scraped
//! from the pods, or read from Prometheus when the fleet names one).
//!
//! [`behavior`], [`calc`] and [`decide`] are pure; the rest samples pods and acts.

pub mod behavior;
pub mod calc;
pub mod decide;
pub mod pods;
pub mod prom;
pub mod runner;
pub mod scrape;

pub use runner::{Autoscaler, AutoscalerConfig};
