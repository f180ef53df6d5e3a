//! `--out junit=FILE`: a run's verdict in the JUnit XML format CI systems read (Jenkins, GitLab,
//! GitHub's test reporters, Azure DevOps). One `<testsuite>` per run, named after the scenario;
//! each threshold is a `<testcase>`, a failed one carrying a `<failure>` with the measured value
//! and the condition; a run that could not be played to its end (failed, or aborted because an
//! agent was lost) adds a `run` test case with an `<error>`, so a report never looks green for a
//! run whose exit code is not. The run's outcome and its lost agents are `<properties>`.
//!
//! The shape is the strictest one in use (Apache Ant's, as the widely used JUnit.xsd describes
//! it): every attribute and element that schema requires is written, so looser readers accept it
//! too. `tests/thresholds.rs` validates the output against `tests/data/junit.xsd`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use wsfleet_controller::outcome::Outcome;
use wsfleet_controller::Summary;

/// The file's text for `summary`, finished at `finished_at` (the suite's timestamp is the run's
/// start: `finished_at` less the run's duration), on `hostname`.
pub fn junit_xml(summary: &Summary, finished_at: SystemTime, hostname: &str) -> String {
    let run_error = run_error(&summary.outcome);
    let failures = summary.thresholds.iter().filter(|threshold| !threshold.passed).count();
    let tests = summary.thresholds.len() + usize::from(run_error.is_some());
    let errors = usize::from(run_error.is_some());
    let duration = if summary.duration_seconds.is_finite() {
        summary.duration_seconds.max(0.0)
    } else {
        0.0
    };
    let started = finished_at
        .checked_sub(Duration::from_secs_f64(duration))
        .filter(|started| *started >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH.max(finished_at));
    // JUnit's timestamp has no zone (ISO 8601 local form); ours is UTC.
    let timestamp = humantime::format_rfc3339_seconds(started).to_string();
    let timestamp = timestamp.trim_end_matches('Z');
    let time = format!("{duration:.3}");
    let class = format!("wsfleet.{}", summary.scenario);

    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // The root carries no attributes: Ant's schema allows none there (readers sum the suites).
    out.push_str("<testsuites>\n");
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" package=\"wsfleet\" id=\"0\" timestamp=\"{timestamp}\" hostname=\"{}\" \
         tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time}\">",
        escape(&summary.scenario),
        escape(hostname),
    );
    out.push_str("    <properties>\n");
    let mut property = |name: &str, value: &str| {
        let _ = writeln!(
            out,
            "      <property name=\"{}\" value=\"{}\"/>",
            escape(name),
            escape(value)
        );
    };
    property("run_id", &summary.run_id);
    property("outcome", &summary.outcome.to_string());
    property("status", summary.outcome.status_word());
    property("agents", &summary.agents.len().to_string());
    property("lost_agents", &summary.lost_agents.events.len().to_string());
    if !summary.lost_agents.policy.is_empty() {
        property("lost_agents.policy", &summary.lost_agents.policy);
    }
    for lost in &summary.lost_agents.events {
        property(
            &format!("lost_agent.{}", lost.agent),
            &format!(
                "lost at {:.1}s: {}; {} ({})",
                lost.at_seconds, lost.reason, lost.action, lost.detail
            ),
        );
    }
    if let Some(seek) = &summary.seek {
        // A goal seek: what it found, and how each step fared.
        property("seek.end", seek.end.name());
        if let Some(found) = seek.found {
            property("seek.found", &seek.load_words(found));
        }
        let steps: Vec<String> = seek
            .steps
            .iter()
            .map(|step| {
                format!(
                    "{} {}",
                    seek.load_words(step.load),
                    if step.passed { "pass" } else { "fail" }
                )
            })
            .collect();
        property("seek.steps", &steps.join(", "));
    }
    out.push_str("    </properties>\n");

    for threshold in &summary.thresholds {
        let name = format!("{} {}", threshold.name, threshold.condition);
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0\"",
            escape(&name),
            escape(&class)
        );
        if threshold.passed {
            out.push_str("/>\n");
            continue;
        }
        let measured = match threshold.value {
            Some(value) => format!("measured {} (raw value {value})", threshold.display),
            None => "nothing was measured".to_owned(),
        };
        let message = format!(
            "{} {} failed: {}",
            threshold.name,
            threshold.condition,
            match threshold.value {
                Some(_) => format!("measured {}", threshold.display),
                None => "nothing was measured".to_owned(),
            }
        );
        let mut detail = format!(
            "threshold: {}\ncondition: {}\n{measured}\n",
            threshold.name, threshold.condition
        );
        if threshold.aborted_run {
            detail.push_str("this threshold stopped the run (abort_on_fail)\n");
        }
        let _ = write!(
            out,
            ">\n      <failure message=\"{}\" type=\"threshold\">{}</failure>\n    </testcase>\n",
            escape(&message),
            escape(&detail)
        );
    }
    if let Some(error) = &run_error {
        let _ = write!(
            out,
            "    <testcase name=\"run\" classname=\"{}\" time=\"{time}\">\n      \
             <error message=\"{}\" type=\"run\">{}</error>\n    </testcase>\n",
            escape(&class),
            escape(error),
            escape(error)
        );
    }
    out.push_str("    <system-out></system-out>\n    <system-err></system-err>\n  </testsuite>\n</testsuites>\n");
    out
}

/// Why the run itself did not pass, apart from its thresholds: it could not be played to its end,
/// or it was stopped because an agent was lost.
fn run_error(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Failed(_) | Outcome::AbortedByLostAgent { .. } => Some(outcome.to_string()),
        _ => None,
    }
}

/// Text for an XML attribute or element: the five markup characters escaped, and characters XML
/// 1.0 cannot carry at all (control characters other than tab and line ends) replaced.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(character),
            control if (control as u32) < 0x20 || control == '\u{FFFE}' || control == '\u{FFFF}' => {
                out.push('\u{FFFD}')
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsfleet_controller::outcome::{Failure, LostAction};
    use wsfleet_controller::summary::{LostAgentEvent, LostAgents, ReportDelivery, Totals};
    use wsfleet_controller::thresholds::ThresholdResult;

    fn summary(outcome: Outcome, thresholds: Vec<ThresholdResult>) -> Summary {
        Summary {
            schema_version: 2,
            run_id: "run-1".into(),
            scenario: "chat <room> & co".into(),
            duration_seconds: 12.5,
            agents: Vec::new(),
            outcome,
            totals: Totals::default(),
            steps: Vec::new(),
            intervals: Vec::new(),
            thresholds,
            changes: Vec::new(),
            seek: None,
            lost_agents: LostAgents::default(),
            reports: ReportDelivery::default(),
        }
    }

    fn threshold(name: &str, condition: &str, value: Option<f64>, display: &str, passed: bool) -> ThresholdResult {
        ThresholdResult {
            name: name.into(),
            condition: condition.into(),
            value,
            display: display.into(),
            passed,
            aborted_run: false,
        }
    }

    #[test]
    fn each_threshold_is_a_test_case_and_failed_ones_say_what_was_measured() {
        let summary = summary(
            Outcome::Completed,
            vec![
                threshold("connections_failed.rate", "< 1%", Some(0.0), "0.00%", true),
                threshold("message_latency.p99", "< 50ms", Some(62_100.0), "62.1ms", false),
                threshold("message_latency{step=echo}.p50", "< 5ms", None, "no data", false),
            ],
        );
        let finished = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let xml = junit_xml(&summary, finished, "lab-1");
        assert!(
            xml.contains("tests=\"3\" failures=\"2\" errors=\"0\" time=\"12.500\">"),
            "{xml}"
        );
        // The start: 12.5 s before the end, to the second, without a zone.
        assert!(
            xml.contains("timestamp=\"2023-11-14T22:13:07\" hostname=\"lab-1\""),
            "{xml}"
        );
        assert!(xml.contains("name=\"chat &lt;room&gt; &amp; co\""));
        assert!(xml.contains(
            "<testcase name=\"connections_failed.rate &lt; 1%\" classname=\"wsfleet.chat &lt;room&gt; &amp; co\" time=\"0\"/>"
        ));
        assert!(xml.contains(
            "<failure message=\"message_latency.p99 &lt; 50ms failed: measured 62.1ms\" type=\"threshold\">"
        ));
        assert!(xml.contains("measured 62.1ms (raw value 62100)"));
        assert!(xml.contains("message_latency{step=echo}.p50 &lt; 5ms failed: nothing was measured"));
        assert_eq!(xml.matches("<failure ").count(), 2);
        assert!(!xml.contains("<error "));
        assert!(xml.contains("<property name=\"outcome\" value=\"completed\"/>"));
        assert!(xml.contains("<property name=\"lost_agents\" value=\"0\"/>"));
    }

    #[test]
    fn a_run_that_did_not_finish_is_an_error_and_lost_agents_are_properties() {
        let mut summary = summary(
            Outcome::AbortedByLostAgent {
                agent: "fleet-2".into(),
                reason: "agent silent for 10s".into(),
            },
            Vec::new(),
        );
        summary.lost_agents = LostAgents {
            policy: "abort".into(),
            events: vec![LostAgentEvent {
                agent: "fleet-2".into(),
                at_seconds: 4.0,
                reason: "agent silent for 10s".into(),
                action: LostAction::Aborted,
                detail: "the run was stopped".into(),
                vus: 5,
            }],
        };
        let xml = junit_xml(&summary, SystemTime::UNIX_EPOCH + Duration::from_secs(100), "h");
        assert!(xml.contains("tests=\"1\" failures=\"0\" errors=\"1\""), "{xml}");
        assert!(
            xml.contains("<error message=\"aborted: agent `fleet-2` was lost (agent silent for 10s)\" type=\"run\">")
        );
        assert!(xml.contains("<property name=\"lost_agents\" value=\"1\"/>"));
        assert!(xml.contains("<property name=\"lost_agents.policy\" value=\"abort\"/>"));
        assert!(xml.contains(
            "<property name=\"lost_agent.fleet-2\" value=\"lost at 4.0s: agent silent for 10s; aborted (the run was stopped)\"/>"
        ));

        let failed = summary_failed();
        assert!(failed.contains("errors=\"1\""));
        assert!(failed.contains("type=\"run\">failed: agents did not finish in time</error>"));
    }

    #[test]
    fn a_seek_is_in_the_properties() {
        let mut summary = summary(Outcome::Completed, Vec::new());
        let step = |load: f64, passed: bool| wsfleet_controller::run::seek::SeekStepSummary {
            load,
            phase: "climb".into(),
            from_seconds: 0,
            seconds: 2,
            passed,
            thresholds: Vec::new(),
            messages_sent_per_second: 0.0,
            messages_received_per_second: 0.0,
            iterations_per_second: 0.0,
            errors: 0,
            peak_active_connections: 0,
            message_latency: None,
        };
        summary.seek = Some(wsfleet_controller::run::seek::SeekSummary {
            part: String::new(),
            measure: "vus".into(),
            start: 10.0,
            step: 10.0,
            max: 100.0,
            interval_seconds: 2,
            warmup_seconds: 0,
            refine: 1,
            end: wsfleet_controller::run::seek::SeekEnd::Found,
            found: Some(10.0),
            steps: vec![step(10.0, true), step(20.0, false), step(15.0, false)],
        });
        let xml = junit_xml(&summary, SystemTime::UNIX_EPOCH + Duration::from_secs(100), "h");
        assert!(xml.contains("<property name=\"seek.end\" value=\"found\"/>"), "{xml}");
        assert!(
            xml.contains("<property name=\"seek.found\" value=\"10 VUs\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("<property name=\"seek.steps\" value=\"10 VUs pass, 20 VUs fail, 15 VUs fail\"/>"),
            "{xml}"
        );
    }

    fn summary_failed() -> String {
        junit_xml(
            &summary(Outcome::Failed(Failure::Deadline), Vec::new()),
            SystemTime::UNIX_EPOCH,
            "h",
        )
    }

    #[test]
    fn text_xml_cannot_carry_is_replaced() {
        assert_eq!(escape("a\u{1}b\t'\""), "a\u{FFFD}b\t&apos;&quot;");
    }
}
