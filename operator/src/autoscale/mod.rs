//! Autoscaling: HorizontalPodAutoscaler v2 semantics per tier, from live pod metrics.
//!
//! [`behavior`], [`calc`] and [`decide`] are pure; the rest samples pods and acts.

pub mod behavior;
pub mod calc;
pub mod decide;
pub mod pods;
pub mod runner;
pub mod scrape;

pub use runner::{Autoscaler, AutoscalerConfig};
