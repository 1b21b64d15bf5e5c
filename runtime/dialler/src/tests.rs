//! The dialler's decisions in virtual time.

use super::*;

fn settings(max_calls: u32, rate: f64, attempts: u32, retry_after_ms: Millis) -> Settings {
    Settings {
        max_calls,
        rate,
        attempts,
        retry_after_ms,
        calendar: None,
    }
}

fn phones(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("1380000{i:04}")).collect()
}

fn outputs(d: &mut Dialler) -> Vec<Output> {
    std::iter::from_fn(|| d.poll_output()).collect()
}

fn dials(d: &mut Dialler) -> Vec<(String, u32)> {
    outputs(d)
        .into_iter()
        .filter_map(|o| match o {
            Output::Dial { phone, attempt } => Some((phone, attempt)),
            Output::Finished => None,
        })
        .collect()
}

/// Runs the machine's timers up to `until`, collecting what it dials with the time.
fn run_until(d: &mut Dialler, until: Millis) -> Vec<(Millis, String, u32)> {
    let mut got = Vec::new();
    while let Some(t) = d.poll_timeout() {
        if t > until {
            break;
        }
        d.handle_timeout(t);
        got.extend(dials(d).into_iter().map(|(p, a)| (t, p, a)));
    }
    got
}

#[test]
fn dials_in_list_order_at_the_rate_and_within_max_calls() {
    let mut d = Dialler::new(settings(3, 5.0, 3, 60_000), true, &[]);
    d.handle_input(Input::List(phones(5)), 0);
    let first = dials(&mut d);
    assert_eq!(
        first,
        vec![("13800000001".to_string(), 1)],
        "one call at once"
    );
    let later = run_until(&mut d, 10_000);
    let times: Vec<Millis> = later.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(
        times,
        vec![200, 400],
        "200 ms apart at 5 a second, then max_calls"
    );
    assert_eq!(d.status().in_progress, 3);
    assert_eq!(d.poll_timeout(), None, "nothing to do at max_calls");
    d.handle_input(
        Input::Ended {
            phone: "13800000002".into(),
            result: AttemptResult::Answered,
        },
        5_000,
    );
    assert_eq!(dials(&mut d), vec![("13800000004".to_string(), 1)]);
}

#[test]
fn no_answer_busy_and_failed_are_retried_after_retry_after_up_to_attempts() {
    let mut d = Dialler::new(settings(10, 100.0, 3, 1_000), true, &[]);
    d.handle_input(Input::List(vec!["a".into()]), 0);
    let mut attempts = dials(&mut d);
    for (i, result) in [
        AttemptResult::NoAnswer,
        AttemptResult::Busy,
        AttemptResult::Failed,
    ]
    .into_iter()
    .enumerate()
    {
        let ended_at = 10_000 * (i as Millis + 1);
        d.handle_input(
            Input::Ended {
                phone: "a".into(),
                result,
            },
            ended_at,
        );
        let next = run_until(&mut d, ended_at + 5_000);
        if i < 2 {
            assert_eq!(next.len(), 1, "retried after {result:?}");
            assert_eq!(next[0].0, ended_at + 1_000, "retry_after after the end");
        } else {
            assert!(next.is_empty(), "out of attempts");
        }
        attempts.extend(next.into_iter().map(|(_, p, a)| (p, a)));
    }
    let numbers: Vec<u32> = attempts.iter().map(|(_, a)| *a).collect();
    assert_eq!(numbers, vec![1, 2, 3]);
    let s = d.status();
    assert_eq!((s.total, s.done, s.answered, s.attempts), (1, 1, 0, 3));
    assert!(s.finished);
}

#[test]
fn an_answered_number_is_done_and_finished_is_told_once() {
    let mut d = Dialler::new(settings(10, 100.0, 3, 1_000), true, &[]);
    d.handle_input(Input::List(vec!["a".into()]), 0);
    assert_eq!(dials(&mut d).len(), 1);
    d.handle_input(
        Input::Ended {
            phone: "a".into(),
            result: AttemptResult::Answered,
        },
        100,
    );
    assert_eq!(outputs(&mut d), vec![Output::Finished]);
    d.handle_timeout(10_000);
    assert!(outputs(&mut d).is_empty());
    let s = d.status();
    assert_eq!((s.done, s.answered, s.next_attempt_at), (1, 1, None));
}

#[test]
fn pause_stops_new_calls_and_start_resumes() {
    let mut d = Dialler::new(settings(10, 1.0, 3, 1_000), false, &[]);
    d.handle_input(Input::List(phones(3)), 0);
    assert!(dials(&mut d).is_empty(), "not started");
    assert_eq!(d.poll_timeout(), None);
    d.handle_input(Input::Start, 1_000);
    assert_eq!(dials(&mut d).len(), 1);
    d.handle_input(Input::Pause, 1_500);
    assert!(run_until(&mut d, 60_000).is_empty(), "paused");
    assert!(!d.status().running);
    d.handle_input(Input::Start, 60_000);
    let resumed = dials(&mut d);
    assert_eq!(resumed, vec![("13800000002".to_string(), 1)]);
    assert_eq!(run_until(&mut d, 61_000).len(), 1, "then at the rate");
}

#[test]
fn a_closed_calendar_holds_calls_until_it_opens() {
    // Monday 2026-11-23, open 09:00-18:00.
    let mut cal = Calendar::default();
    cal.weekly[0] = vec![(9 * 60, 18 * 60)];
    let monday = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
        .and_then(|d| d.and_hms_opt(8, 58, 30))
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default();
    let mut s = settings(10, 10.0, 3, 1_000);
    s.calendar = Some(cal);
    let mut d = Dialler::new(s, true, &[]);
    d.handle_input(Input::List(phones(1)), monday);
    assert!(dials(&mut d).is_empty(), "08:58 is outside hours");
    assert!(d.status().outside_hours);
    let got = run_until(&mut d, monday + 3 * 60_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, monday + 90_000, "at 09:00:00 sharp");
}

#[test]
fn a_restart_goes_on_from_the_rows_and_calls_nobody_twice_for_one_attempt() {
    let history = vec![
        // answered on the second attempt
        PastAttempt {
            phone: "a".into(),
            attempt: 1,
            started_at: 0,
            ended_at: Some(100),
            result: Some(AttemptResult::NoAnswer),
            answered: false,
        },
        PastAttempt {
            phone: "a".into(),
            attempt: 2,
            started_at: 2_000,
            ended_at: Some(3_000),
            result: Some(AttemptResult::Answered),
            answered: true,
        },
        // under way when the server stopped: counts as made
        PastAttempt {
            phone: "b".into(),
            attempt: 1,
            started_at: 4_000,
            ended_at: None,
            result: None,
            answered: false,
        },
        // out of attempts
        PastAttempt {
            phone: "c".into(),
            attempt: 1,
            started_at: 0,
            ended_at: Some(10),
            result: Some(AttemptResult::Busy),
            answered: false,
        },
        PastAttempt {
            phone: "c".into(),
            attempt: 2,
            started_at: 20,
            ended_at: Some(30),
            result: Some(AttemptResult::Busy),
            answered: false,
        },
    ];
    let mut d = Dialler::new(settings(10, 100.0, 2, 10_000), true, &history);
    d.handle_input(
        Input::List(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
        5_000,
    );
    assert_eq!(
        dials(&mut d),
        vec![("d".to_string(), 1)],
        "only the new number at once"
    );
    let later = run_until(&mut d, 100_000);
    assert_eq!(
        later,
        vec![(14_000, "b".to_string(), 2)],
        "b's second attempt, retry_after after the first started"
    );
    let s = d.status();
    assert_eq!((s.total, s.done, s.answered, s.attempts), (4, 2, 1, 7));
}

#[test]
fn a_full_trunk_does_not_use_up_an_attempt() {
    let mut d = Dialler::new(settings(10, 100.0, 1, 1_000), true, &[]);
    d.handle_input(Input::List(vec!["a".into()]), 0);
    assert_eq!(dials(&mut d), vec![("a".to_string(), 1)]);
    d.handle_input(Input::NotPlaced { phone: "a".into() }, 10);
    assert_eq!(d.status().attempts, 0);
    let again = run_until(&mut d, 5_000);
    assert_eq!(
        again,
        vec![(10 + NOT_PLACED_BACKOFF_MS, "a".to_string(), 1)],
        "the same attempt, a second later"
    );
}

#[test]
fn a_new_list_adds_numbers_and_leaves_out_the_ones_no_longer_listed() {
    let mut d = Dialler::new(settings(1, 100.0, 3, 1_000), true, &[]);
    d.handle_input(Input::List(phones(3)), 0);
    assert_eq!(dials(&mut d).len(), 1);
    // 0002 paid: the list no longer names it; 0004 is new; 0001 is under way.
    let list = vec!["13800000003".to_string(), "13800000004".to_string()];
    d.handle_input(Input::List(list), 10);
    assert_eq!(d.status().total, 3, "0001 (attempted), 0003, 0004");
    d.handle_input(
        Input::Ended {
            phone: "13800000001".into(),
            result: AttemptResult::Answered,
        },
        20,
    );
    let mut called = dials(&mut d);
    for _ in 0..2 {
        let next = called.last().map(|(p, _)| p.clone()).unwrap_or_default();
        d.handle_input(
            Input::Ended {
                phone: next,
                result: AttemptResult::Answered,
            },
            1_000,
        );
        called.extend(dials(&mut d));
    }
    let names: Vec<&str> = called.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, vec!["13800000003", "13800000004"]);
    assert!(d.status().finished);
}

#[test]
fn results_of_sip_statuses() {
    assert_eq!(AttemptResult::of_status(486), AttemptResult::Busy);
    assert_eq!(AttemptResult::of_status(480), AttemptResult::NoAnswer);
    assert_eq!(AttemptResult::of_status(503), AttemptResult::Failed);
    for (name, r) in AttemptResult::ALL {
        assert_eq!(AttemptResult::parse(name), Some(r));
        assert_eq!(r.as_str(), name);
    }
}
