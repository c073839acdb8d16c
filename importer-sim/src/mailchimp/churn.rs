//! The churn plan: changes applied to a list once it has answered a number of member requests,
//! so tests, the demo and the CLI can change a list while a run reads it without timing anything.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::config::ChurnStep;
use crate::lock;

/// The plan and how far each list has got through it.
#[derive(Debug, Default)]
pub(crate) struct ChurnState {
    inner: Mutex<Plan>,
}

#[derive(Debug, Default)]
struct Plan {
    steps: Vec<ChurnStep>,
    /// Member requests answered, per list.
    requests: HashMap<String, u64>,
    /// (step index, list) pairs already applied.
    fired: HashSet<(usize, String)>,
    /// Ids the applied steps changed, per list.
    changed: HashMap<String, Vec<String>>,
}

impl ChurnState {
    pub(crate) fn new(steps: Vec<ChurnStep>) -> ChurnState {
        ChurnState {
            inner: Mutex::new(Plan {
                steps,
                ..Plan::default()
            }),
        }
    }

    pub(crate) fn set(&self, steps: Vec<ChurnStep>) {
        *lock(&self.inner) = Plan {
            steps,
            ..Plan::default()
        };
    }

    pub(crate) fn steps(&self) -> Vec<ChurnStep> {
        lock(&self.inner).steps.clone()
    }

    /// Records the ids a step changed in `list_id`.
    pub(crate) fn log(&self, list_id: &str, ids: &[String]) {
        lock(&self.inner)
            .changed
            .entry(list_id.to_owned())
            .or_default()
            .extend_from_slice(ids);
    }

    /// The ids changed in `list_id` so far.
    pub(crate) fn changed(&self, list_id: &str) -> Vec<String> {
        lock(&self.inner)
            .changed
            .get(list_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Counts one member request of `list_id`; returns the steps due for it now.
    pub(crate) fn count_request(&self, list_id: &str) -> Vec<ChurnStep> {
        let mut plan = lock(&self.inner);
        if plan.steps.is_empty() {
            return Vec::new();
        }
        let n = {
            let n = plan.requests.entry(list_id.to_owned()).or_default();
            *n += 1;
            *n
        };
        let due: Vec<usize> = plan
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.list_id.as_deref().is_none_or(|l| l == list_id))
            .filter(|(_, s)| n > s.after_requests)
            .map(|(i, _)| i)
            .collect();
        let mut out = Vec::new();
        for i in due {
            if plan.fired.insert((i, list_id.to_owned())) {
                out.push(plan.steps[i].clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_fires_once_per_list_after_its_request_count() {
        let state = ChurnState::new(vec![ChurnStep {
            after_requests: 2,
            modify: 0.1,
            ..ChurnStep::default()
        }]);
        assert!(state.count_request("a").is_empty());
        assert!(state.count_request("a").is_empty());
        assert_eq!(state.count_request("a").len(), 1);
        assert!(state.count_request("a").is_empty());
        assert!(state.count_request("b").is_empty());
        state.set(vec![]);
        assert!(state.count_request("a").is_empty());
    }
}
