//! The campaign dialler, sans-IO: for one campaign, which number to dial next and when.
//!
//! A [`Dialler`] holds the numbers of a campaign's list with the attempts made at each, and
//! decides, as an [`ivr_sansio::Machine`], when to place the next call: only while the
//! campaign runs (`start` / `pause`), while its calendar is open, with fewer than `max_calls`
//! of its calls at once, at most `rate` new calls a second, and a number again only
//! `retry_after` after its last attempt ended with no answer, busy or failed, up to
//! `attempts` in all. A number is done when answered or out of attempts.
//!
//! It reads no clock and does no I/O: its driver (`ivr-server`'s campaign task) runs the list
//! query and hands in the phones ([`Input::List`]), writes a `campaign_attempts` row and places
//! the call for each [`Output::Dial`], and reports how each attempt ended ([`Input::Ended`]),
//! or that the trunk had no channel free ([`Input::NotPlaced`]). After a restart the driver
//! makes the machine again from the rows it wrote ([`PastAttempt`]): every attempt started
//! counts, so no number is called twice for one attempt.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use chrono::{Datelike, Timelike};
use ivr_compiler::config::{Calendar, CampaignConfig};
use ivr_sansio::{Machine, Millis};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

/// The most numbers one campaign holds; a list longer than this is cut (the rest counted in
/// [`Status::over_limit`]).
pub const MAX_NUMBERS: usize = 1_000_000;
/// How long a number waits when the trunk had no channel free for it.
pub const NOT_PLACED_BACKOFF_MS: Millis = 1_000;

/// How an attempt ended (`campaign_attempts.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// The callee answered; the campaign's flow ran.
    Answered,
    /// The callee's phone rang until `ring_timeout` (or the network said no answer).
    NoAnswer,
    /// The callee was busy (486, 600).
    Busy,
    /// Anything else: a refusal, an unreachable gateway, a restart during the attempt.
    Failed,
}

impl AttemptResult {
    /// Every result with its name, as stored.
    pub const ALL: [(&'static str, AttemptResult); 4] = [
        ("answered", AttemptResult::Answered),
        ("no_answer", AttemptResult::NoAnswer),
        ("busy", AttemptResult::Busy),
        ("failed", AttemptResult::Failed),
    ];

    /// The name stored in `campaign_attempts.result`.
    pub fn as_str(self) -> &'static str {
        AttemptResult::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map_or("failed", |(n, _)| n)
    }

    /// The result of a stored name.
    pub fn parse(name: &str) -> Option<AttemptResult> {
        AttemptResult::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r)
    }

    /// The result of a final SIP status to an INVITE we sent (486 and 600 busy, 408 and 480
    /// no answer, others failed).
    pub fn of_status(status: u16) -> AttemptResult {
        match status {
            486 | 600 => AttemptResult::Busy,
            408 | 480 | 487 => AttemptResult::NoAnswer,
            _ => AttemptResult::Failed,
        }
    }
}

/// What the dialler works to: a campaign's `max_calls`, `rate`, `attempts`, `retry_after` and
/// calendar.
#[derive(Debug, Clone)]
pub struct Settings {
    /// At most this many of the campaign's calls at once (at least 1).
    pub max_calls: u32,
    /// New calls a second at most (more than 0).
    pub rate: f64,
    /// Attempts per number (at least 1).
    pub attempts: u32,
    /// Milliseconds between the end of an attempt and the next at the same number.
    pub retry_after_ms: Millis,
    /// Dial only while this calendar is open; always when `None`.
    pub calendar: Option<Calendar>,
}

impl Settings {
    /// The settings of a campaign of `ivr.toml` (`calendars` are the configuration's; a
    /// calendar it does not have, which `ivr check` reports, means never open).
    pub fn of_campaign(
        campaign: &CampaignConfig,
        calendars: &indexmap::IndexMap<String, Calendar>,
    ) -> Settings {
        Settings {
            max_calls: campaign.max_calls.max(1),
            rate: campaign.rate,
            attempts: campaign.attempts.max(1),
            retry_after_ms: Millis::try_from(campaign.retry_after_ms).unwrap_or(Millis::MAX),
            calendar: campaign
                .calendar
                .as_ref()
                .map(|c| calendars.get(c).cloned().unwrap_or_default()),
        }
    }

    /// Microseconds between two new calls.
    fn interval_us(&self) -> i64 {
        let rate = if self.rate.is_finite() && self.rate > 0.0 {
            self.rate
        } else {
            1.0
        };
        // At most 1000 a second is enforced by the configuration; at least one a day.
        (1_000_000.0 / rate).clamp(1.0, 86_400_000_000.0) as i64
    }

    /// Whether the calendar lets the campaign dial at `now` (local wall-clock time).
    pub fn open_at(&self, now: Millis) -> bool {
        let Some(cal) = &self.calendar else {
            return true;
        };
        let Some(t) = chrono::DateTime::from_timestamp_millis(now).map(|t| t.naive_utc()) else {
            return false;
        };
        cal.is_open(
            (t.year(), t.month(), t.day()),
            t.weekday().num_days_from_monday() as usize,
            u16::try_from(t.hour() * 60 + t.minute()).unwrap_or(0),
        )
    }
}

/// An attempt written before this machine was made (a `campaign_attempts` row).
#[derive(Debug, Clone)]
pub struct PastAttempt {
    /// The number dialled.
    pub phone: String,
    /// 1, 2, ...
    pub attempt: u32,
    /// When the attempt started.
    pub started_at: Millis,
    /// When it ended; `None` for an attempt that was under way when `ivr serve` stopped (it
    /// counts as made, and failed).
    pub ended_at: Option<Millis>,
    /// How it ended, when it did.
    pub result: Option<AttemptResult>,
    /// Whether the callee answered (`answered_at` is set).
    pub answered: bool,
}

/// What the dialler is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// `ivr campaign start NAME`: dial.
    Start,
    /// `ivr campaign pause NAME`: place no new call (calls under way go on).
    Pause,
    /// The phones of the campaign's list, in its order (the list query's rows, again when it
    /// is run again): new phones are added, numbers no longer listed that are waiting are left
    /// out; attempts made are kept.
    List(Vec<String>),
    /// An attempt the dialler asked for has ended.
    Ended {
        /// The number.
        phone: String,
        /// How.
        result: AttemptResult,
    },
    /// The trunk had no channel free: the attempt did not happen (it does not count); the
    /// number waits [`NOT_PLACED_BACKOFF_MS`].
    NotPlaced {
        /// The number.
        phone: String,
    },
    /// The configuration was reloaded.
    Settings(Settings),
}

/// What the dialler asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write the attempt's row, then dial the number.
    Dial {
        /// The number.
        phone: String,
        /// Which attempt at it this is: 1, 2, ...
        attempt: u32,
    },
    /// Every listed number is done (answered or out of attempts).
    Finished,
}

/// A campaign's progress (`GET /campaigns/NAME`, the dashboard).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Whether the campaign is started (not paused).
    pub running: bool,
    /// Whether every number is done.
    pub finished: bool,
    /// Numbers in the campaign: listed, or listed once and attempted.
    pub total: usize,
    /// Numbers answered or out of attempts.
    pub done: usize,
    /// Numbers answered.
    pub answered: usize,
    /// Calls under way.
    pub in_progress: usize,
    /// Attempts made in all.
    pub attempts: u64,
    /// When the next attempt is due (local wall-clock ms), if any number waits.
    pub next_attempt_at: Option<Millis>,
    /// Whether the calendar is closed at the time of this status.
    pub outside_hours: bool,
    /// Rows of the list beyond [`MAX_NUMBERS`], not dialled.
    pub over_limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Due at this time (in the ready set).
    Waiting(Millis),
    /// Waiting, but no longer listed: not dialled.
    Unlisted,
    Calling,
    Done {
        answered: bool,
    },
}

#[derive(Debug)]
struct Number {
    phone: String,
    attempts: u32,
    state: State,
    /// Once listed or attempted: counted in the total.
    counted: bool,
}

/// One campaign's dialler (see the crate's documentation).
#[derive(Debug)]
pub struct Dialler {
    settings: Settings,
    running: bool,
    numbers: Vec<Number>,
    index: HashMap<String, usize>,
    /// Waiting numbers by due time, then list order.
    ready: BTreeSet<(Millis, usize)>,
    in_progress: usize,
    attempts_made: u64,
    /// The earliest time of the next new call, in microseconds.
    next_slot_us: i64,
    listed: bool,
    /// When numbers not (or no longer) listed may be tried again, once listed.
    retry_at_of_unlisted: HashMap<usize, Millis>,
    finished_told: bool,
    over_limit: usize,
    /// The time last handed in (for `Status::outside_hours`).
    now: Millis,
    out: VecDeque<Output>,
}

impl Dialler {
    /// A dialler for a campaign, `running` as it was left, with the attempts written before.
    pub fn new(settings: Settings, running: bool, history: &[PastAttempt]) -> Dialler {
        let mut d = Dialler {
            settings,
            running,
            numbers: Vec::new(),
            index: HashMap::new(),
            ready: BTreeSet::new(),
            in_progress: 0,
            attempts_made: 0,
            next_slot_us: 0,
            listed: false,
            retry_at_of_unlisted: HashMap::new(),
            finished_told: false,
            over_limit: 0,
            now: 0,
            out: VecDeque::new(),
        };
        // Per number: the most attempts made, whether one was answered, when the last ended.
        let mut seen: HashMap<&str, (u32, bool, Millis)> = HashMap::new();
        for a in history {
            d.attempts_made += 1;
            let e = seen.entry(a.phone.as_str()).or_insert((0, false, 0));
            e.0 = e.0.max(a.attempt);
            e.1 |= a.answered || a.result == Some(AttemptResult::Answered);
            e.2 = e.2.max(a.ended_at.unwrap_or(a.started_at));
        }
        for a in history {
            let Some((attempts, answered, last)) = seen.remove(a.phone.as_str()) else {
                continue;
            };
            if d.numbers.len() >= MAX_NUMBERS {
                break;
            }
            let state = if answered {
                State::Done { answered: true }
            } else if attempts >= d.settings.attempts {
                State::Done { answered: false }
            } else {
                State::Unlisted
            };
            let i = d.numbers.len();
            d.index.insert(a.phone.clone(), i);
            d.numbers.push(Number {
                phone: a.phone.clone(),
                attempts,
                state,
                counted: true,
            });
            // Remember when it may be tried again, for when the list names it.
            if state == State::Unlisted {
                d.retry_at_of_unlisted
                    .insert(i, last + d.settings.retry_after_ms);
            }
        }
        d
    }

    /// The campaign's progress at the time last handed in.
    pub fn status(&self) -> Status {
        let mut s = Status {
            running: self.running,
            in_progress: self.in_progress,
            attempts: self.attempts_made,
            over_limit: self.over_limit,
            next_attempt_at: self.ready.first().map(|(due, _)| *due),
            outside_hours: !self.settings.open_at(self.now),
            ..Status::default()
        };
        for n in self.numbers.iter().filter(|n| n.counted) {
            s.total += 1;
            if let State::Done { answered } = n.state {
                s.done += 1;
                s.answered += usize::from(answered);
            }
        }
        s.finished = self.is_finished();
        s
    }

    /// Whether every listed number is done and no call is under way.
    fn is_finished(&self) -> bool {
        self.listed && self.ready.is_empty() && self.in_progress == 0
    }

    fn set_waiting(&mut self, i: usize, due: Millis) {
        self.numbers[i].state = State::Waiting(due);
        self.ready.insert((due, i));
    }

    fn take_waiting(&mut self, i: usize) {
        if let State::Waiting(due) = self.numbers[i].state {
            self.ready.remove(&(due, i));
        }
    }

    fn list(&mut self, phones: Vec<String>, now: Millis) {
        let mut listed: HashSet<usize> = HashSet::new();
        for phone in phones {
            let phone = phone.trim().to_string();
            if phone.is_empty() {
                continue;
            }
            let i = match self.index.get(&phone) {
                Some(&i) => i,
                None => {
                    if self.numbers.len() >= MAX_NUMBERS {
                        self.over_limit += 1;
                        continue;
                    }
                    let i = self.numbers.len();
                    self.index.insert(phone.clone(), i);
                    self.numbers.push(Number {
                        phone,
                        attempts: 0,
                        state: State::Unlisted,
                        counted: false,
                    });
                    i
                }
            };
            if !listed.insert(i) {
                continue; // the same phone twice in the list
            }
            let n = &mut self.numbers[i];
            n.counted = true;
            if n.state == State::Unlisted {
                let due = self.retry_at_of_unlisted.remove(&i).unwrap_or(now);
                self.set_waiting(i, due);
            }
        }
        // Waiting numbers the list no longer names are left out.
        let dropped: Vec<(Millis, usize)> = self
            .ready
            .iter()
            .filter(|(_, i)| !listed.contains(i))
            .copied()
            .collect();
        for (due, i) in dropped {
            self.ready.remove(&(due, i));
            self.retry_at_of_unlisted.insert(i, due);
            let n = &mut self.numbers[i];
            n.state = State::Unlisted;
            n.counted = n.attempts > 0;
        }
        self.listed = true;
        self.finished_told = false;
    }

    fn ended(&mut self, phone: &str, result: AttemptResult, now: Millis) {
        let Some(&i) = self.index.get(phone) else {
            return;
        };
        if self.numbers[i].state != State::Calling {
            return;
        }
        self.in_progress = self.in_progress.saturating_sub(1);
        let n = &mut self.numbers[i];
        if result == AttemptResult::Answered {
            n.state = State::Done { answered: true };
        } else if n.attempts >= self.settings.attempts {
            n.state = State::Done { answered: false };
        } else {
            let due = now.saturating_add(self.settings.retry_after_ms);
            self.set_waiting(i, due);
        }
    }

    fn not_placed(&mut self, phone: &str, now: Millis) {
        let Some(&i) = self.index.get(phone) else {
            return;
        };
        if self.numbers[i].state != State::Calling {
            return;
        }
        self.in_progress = self.in_progress.saturating_sub(1);
        self.attempts_made = self.attempts_made.saturating_sub(1);
        self.numbers[i].attempts = self.numbers[i].attempts.saturating_sub(1);
        self.set_waiting(i, now.saturating_add(NOT_PLACED_BACKOFF_MS));
    }

    fn reconfigure(&mut self, settings: Settings) {
        self.settings = settings;
        self.next_slot_us = 0;
        // Numbers already out of the new number of attempts are done.
        let out: Vec<(Millis, usize)> = self
            .ready
            .iter()
            .filter(|(_, i)| self.numbers[*i].attempts >= self.settings.attempts)
            .copied()
            .collect();
        for (due, i) in out {
            self.ready.remove(&(due, i));
            self.numbers[i].state = State::Done { answered: false };
        }
    }

    /// Places every call that is due and allowed at `now`.
    fn pump(&mut self, now: Millis) {
        self.now = now;
        let now_us = now.saturating_mul(1000);
        while self.running
            && self.in_progress < self.settings.max_calls as usize
            && now_us >= self.next_slot_us
            && self.settings.open_at(now)
        {
            let Some(&(due, i)) = self.ready.first() else {
                break;
            };
            if due > now {
                break;
            }
            self.take_waiting(i);
            let n = &mut self.numbers[i];
            n.attempts += 1;
            n.state = State::Calling;
            self.in_progress += 1;
            self.attempts_made += 1;
            self.out.push_back(Output::Dial {
                phone: n.phone.clone(),
                attempt: n.attempts,
            });
            let interval = self.settings.interval_us();
            let next = self.next_slot_us.saturating_add(interval);
            // Keep the grid while on time; start again from now after an idle time.
            self.next_slot_us = if next <= now_us {
                now_us.saturating_add(interval)
            } else {
                next
            };
        }
        if self.is_finished() && !self.finished_told {
            self.finished_told = true;
            self.out.push_back(Output::Finished);
        }
    }
}

impl Machine for Dialler {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, input: Input, now: Millis) {
        match input {
            Input::Start => {
                self.running = true;
                self.finished_told = false;
            }
            Input::Pause => self.running = false,
            Input::List(phones) => self.list(phones, now),
            Input::Ended { phone, result } => self.ended(&phone, result, now),
            Input::NotPlaced { phone } => self.not_placed(&phone, now),
            Input::Settings(s) => self.reconfigure(s),
        }
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<Millis> {
        if !self.running || self.in_progress >= self.settings.max_calls as usize {
            return None;
        }
        let (due, _) = self.ready.first()?;
        let slot = self.next_slot_us.div_euclid(1000)
            + Millis::from(self.next_slot_us.rem_euclid(1000) != 0);
        let at = (*due).max(slot);
        if self.settings.calendar.is_some() && !self.settings.open_at(at.max(self.now)) {
            // Closed: look again at the start of the next minute.
            let t = at.max(self.now);
            return Some(t - t.rem_euclid(60_000) + 60_000);
        }
        Some(at)
    }

    fn handle_timeout(&mut self, now: Millis) {
        self.pump(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests;
