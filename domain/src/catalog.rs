//! The event catalog: the 43 event names Qase sends, exactly as spelled there.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of object an event is about; groups the "Events" checkboxes of a UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Case,
    Suite,
    Plan,
    SharedStep,
    Milestone,
    CustomField,
    Run,
    Defect,
    Review,
    Result,
    /// The service's own events (`webhook.ping`); none is in the catalog.
    Webhook,
}

impl Entity {
    pub fn label(self) -> &'static str {
        match self {
            Entity::Case => "Test cases",
            Entity::Suite => "Test suites",
            Entity::Plan => "Test plans",
            Entity::SharedStep => "Shared steps",
            Entity::Milestone => "Milestones",
            Entity::CustomField => "Custom fields",
            Entity::Run => "Test runs",
            Entity::Defect => "Defects",
            Entity::Review => "Reviews",
            Entity::Result => "Results",
            Entity::Webhook => "Webhook",
        }
    }
}

macro_rules! catalog {
    ($($variant:ident = $name:literal, $entity:ident, $label:literal;)*
     @own $($own:ident = $own_name:literal, $own_entity:ident, $own_label:literal;)*) => {
        /// One event name of the catalog, or one of the service's own events
        /// (which no webhook subscribes to and no one publishes). Serialized
        /// as its exact string.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventName {
            $(#[serde(rename = $name)] $variant,)*
            $(#[serde(rename = $own_name)] $own,)*
        }

        impl EventName {
            /// Every event name of the catalog, in catalog order.
            pub const ALL: &'static [EventName] = &[$(EventName::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventName::$variant => $name,)*
                    $(EventName::$own => $own_name,)*
                }
            }

            pub fn entity(self) -> Entity {
                match self {
                    $(EventName::$variant => Entity::$entity,)*
                    $(EventName::$own => Entity::$own_entity,)*
                }
            }

            /// A human label for a checkbox, e.g. "Run completed".
            pub fn label(self) -> &'static str {
                match self {
                    $(EventName::$variant => $label,)*
                    $(EventName::$own => $own_label,)*
                }
            }
        }
    };
}

catalog! {
    CaseCreated = "case.created", Case, "Test case created";
    CaseUpdated = "case.updated", Case, "Test case updated";
    CaseDeleted = "case.deleted", Case, "Test case deleted";
    CaseCloned = "case.cloned", Case, "Test case cloned";
    SuiteCreated = "suite.created", Suite, "Test suite created";
    SuiteUpdated = "suite.updated", Suite, "Test suite updated";
    SuiteDeleted = "suite.deleted", Suite, "Test suite deleted";
    SuiteCloned = "suite.cloned", Suite, "Test suite cloned";
    PlanCreated = "plan.created", Plan, "Test plan created";
    PlanUpdated = "plan.updated", Plan, "Test plan updated";
    PlanDeleted = "plan.deleted", Plan, "Test plan deleted";
    SharedStepCreated = "shared_step.created", SharedStep, "Shared step created";
    SharedStepUpdated = "shared_step.updated", SharedStep, "Shared step updated";
    SharedStepDeleted = "shared_step.deleted", SharedStep, "Shared step deleted";
    MilestoneCreated = "milestone.created", Milestone, "Milestone created";
    MilestoneUpdated = "milestone.updated", Milestone, "Milestone updated";
    MilestoneDeleted = "milestone.deleted", Milestone, "Milestone deleted";
    CustomFieldCreated = "custom_field.created", CustomField, "Custom field created";
    CustomFieldUpdated = "custom_field.updated", CustomField, "Custom field updated";
    CustomFieldDeleted = "custom_field.deleted", CustomField, "Custom field deleted";
    RunStarted = "run.started", Run, "Test run started";
    RunAborted = "run.aborted", Run, "Test run aborted";
    RunUpdated = "run.updated", Run, "Cases added to a test run";
    RunDeleted = "run.deleted", Run, "Test run deleted";
    RunCompleted = "run.completed", Run, "Test run completed";
    RunReportChanged = "run.report_changed", Run, "Test run public link enabled";
    DefectCreated = "defect.created", Defect, "Defect created";
    DefectUpdated = "defect.updated", Defect, "Defect updated";
    DefectResolved = "defect.resolved", Defect, "Defect resolved";
    DefectDeleted = "defect.deleted", Defect, "Defect deleted";
    ReviewCreated = "review.created", Review, "Review created";
    ReviewUpdated = "review.updated", Review, "Review updated";
    ReviewApprovalStatusChanged = "review.approval_status_changed", Review, "Review approval status changed";
    ReviewReviewerAdded = "review.reviewer_added", Review, "Reviewer added to a review";
    ReviewReviewerRemoved = "review.reviewer_removed", Review, "Reviewer removed from a review";
    ReviewMerged = "review.merged", Review, "Review merged";
    ReviewReopened = "review.reopened", Review, "Review reopened";
    ReviewCommented = "review.commented", Review, "Review commented";
    ReviewDeclined = "review.declined", Review, "Review declined";
    ReviewDeleted = "review.deleted", Review, "Review deleted";
    ResultCreated = "result.created", Result, "Test result created";
    ResultUpdated = "result.updated", Result, "Test result updated";
    ResultDeleted = "result.deleted", Result, "Test result deleted";
@own
    Ping = "webhook.ping", Webhook, "Ping";
}

/// The name is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event name")]
pub struct UnknownEventName;

impl FromStr for EventName {
    type Err = UnknownEventName;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        EventName::ALL
            .iter()
            .copied()
            .find(|name| name.as_str() == raw)
            .ok_or(UnknownEventName)
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The catalog as Qase documents it, copied by hand as a second source.
    const SPEC: &str = "case.created case.updated case.deleted case.cloned \
        suite.created suite.updated suite.deleted suite.cloned \
        plan.created plan.updated plan.deleted \
        shared_step.created shared_step.updated shared_step.deleted \
        milestone.created milestone.updated milestone.deleted \
        custom_field.created custom_field.updated custom_field.deleted \
        run.started run.aborted run.updated run.deleted run.completed run.report_changed \
        defect.created defect.updated defect.resolved defect.deleted \
        review.created review.updated review.approval_status_changed review.reviewer_added \
        review.reviewer_removed review.merged review.reopened review.commented review.declined \
        review.deleted result.created result.updated result.deleted";

    #[test]
    fn entities_carry_their_labels_and_names_show_as_sent() {
        let labels: Vec<&str> = EventName::ALL.iter().map(|e| e.entity().label()).collect();
        assert!(labels.contains(&"Test cases") && labels.contains(&"Results"));
        assert_eq!(Entity::Case.label(), "Test cases");
        assert_eq!(Entity::SharedStep.label(), "Shared steps");
        assert_eq!(Entity::Run.label(), "Test runs");
        assert_eq!(EventName::RunCompleted.to_string(), "run.completed");
        for name in EventName::ALL {
            assert_eq!(name.to_string(), name.as_str());
        }
    }

    #[test]
    fn catalog_is_exactly_the_43_spec_names_in_order() {
        let spec: Vec<&str> = SPEC.split_whitespace().collect();
        let ours: Vec<&str> = EventName::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(ours.len(), 43);
        assert_eq!(ours, spec);
    }

    #[test]
    fn every_name_parses_and_serializes_to_itself() {
        for name in EventName::ALL {
            assert_eq!(name.as_str().parse::<EventName>(), Ok(*name));
            assert_eq!(serde_json::to_value(name).unwrap(), name.as_str());
            assert!(name.as_str().starts_with(&format!(
                "{}.",
                serde_json::to_value(name.entity()).unwrap().as_str().unwrap()
            )));
        }
        let labels: HashSet<_> = EventName::ALL.iter().map(|e| e.label()).collect();
        assert_eq!(labels.len(), 43, "labels are distinct");
    }

    #[test]
    fn the_ping_is_no_catalog_event_and_cannot_be_published_or_subscribed() {
        assert!(!EventName::ALL.contains(&EventName::Ping));
        assert_eq!("webhook.ping".parse::<EventName>(), Err(UnknownEventName));
        assert_eq!(EventName::Ping.as_str(), "webhook.ping");
        assert_eq!(
            serde_json::to_value(EventName::Ping).unwrap(),
            "webhook.ping"
        );
        assert_eq!(EventName::Ping.entity().label(), "Webhook");
    }

    #[test]
    fn unknown_and_differently_cased_names_are_rejected() {
        for bad in [
            "",
            "run",
            "run.finished",
            "Run.Completed",
            " run.completed",
            "run.completed ",
        ] {
            assert_eq!(bad.parse::<EventName>(), Err(UnknownEventName), "{bad:?}");
        }
    }
}
