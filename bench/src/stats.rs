//! Repeated measurements and their min / median / max.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub runs: usize,
    /// What the figure should be, when the issue set a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Figure {
    pub fn new(name: &str, unit: &str, samples: &[f64]) -> Self {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return f64::NAN;
            }
            let i = ((sorted.len() - 1) as f64 * q).round() as usize;
            sorted[i]
        };
        Self {
            name: name.to_owned(),
            unit: unit.to_owned(),
            min: at(0.0),
            median: at(0.5),
            max: at(1.0),
            runs: sorted.len(),
            target: None,
        }
    }

    /// A figure measured once (a count, a size).
    pub fn once(name: &str, unit: &str, value: f64) -> Self {
        Self::new(name, unit, &[value])
    }

    pub fn with_target(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }
}

/// The q-quantile of `values` (nearest rank).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
