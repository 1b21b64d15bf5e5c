//! `ivr init DIR`: a new project that passes `ivr check` and `ivr test` at once: ivr.toml, a
//! flow that teaches the main node kinds, its scenarios, a prompt catalog with generated audio
//! and a SQLite database with the table the flow looks up.

use crate::prompts_generate::{self, GenerateError, GenerateOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Why no project was made.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// DIR exists and holds something.
    #[error("{} is not empty: `ivr init` makes a new project in a new or empty folder", .0.display())]
    NotEmpty(PathBuf),
    /// A file or folder cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The prompt audio cannot be generated.
    #[error(
        "{0}\n(the project is in place without audio: run `ivr prompts generate` in it once espeak-ng works)"
    )]
    Audio(#[from] GenerateError),
    /// The starter database cannot be made.
    #[error("cannot create the starter database: {0}")]
    Data(#[from] ivr_data::DataError),
    /// No random bytes for the agent's password.
    #[error("no random numbers for the agent's password: {0}")]
    Random(String),
}

/// The agent the project starts with.
const AGENT: &str = "1001";
/// The SIP realm of the new project.
const REALM: &str = "ivr";

/// Makes the project in `dir`.
pub fn run(dir: &Path) -> Result<ExitCode, InitError> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty || !dir.is_dir() {
            return Err(InitError::NotEmpty(dir.to_path_buf()));
        }
    }
    let password = random_password()?;
    let ha1 = ivr_sip::registrar::ha1(AGENT, REALM, &password);
    let files: [(&str, String); 4] = [
        ("ivr.toml", IVR_TOML.replace("{HA1}", &ha1)),
        ("flows/hotline.flow", MAIN_FLOW.to_string()),
        ("flows/hotline.scenario", MAIN_SCENARIO.to_string()),
        ("prompts/en-US/prompts.toml", PROMPTS.to_string()),
    ];
    let files = files
        .into_iter()
        .chain([(".gitignore", GITIGNORE.to_string())]);
    for (name, text) in files {
        let path = dir.join(name);
        let fail = |source| InitError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&path, text).map_err(fail)?;
    }
    create_database(&dir.join("data/ivr.db"))?;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "generating prompt audio (espeak-ng) ...");
    let done = prompts_generate::generate(
        &dir.join("prompts"),
        &GenerateOptions::default(),
        &mut std::io::sink(),
    )?;
    let d = dir.display();
    let _ = writeln!(
        out,
        "created {d}: ivr.toml, flows/hotline.flow and hotline.scenario, {} prompts with audio, data/ivr.db

agent {AGENT} logs in to the console and registers its phone with the password {password}
(only its ha1 is in ivr.toml; `ivr agent-password {AGENT}` makes a new one)

next:
  cd {d}
  ivr check                  # the flow against ivr.toml and the prompts
  ivr test                   # the scenarios in flows/hotline.scenario
  ivr simulate hotline       # call it in the terminal (caller 13800000001 has an account)
  ivr serve                  # SIP on :5060, http://127.0.0.1:8080/phone and /agent",
        done.written
    );
    Ok(ExitCode::SUCCESS)
}

fn random_password() -> Result<String, InitError> {
    const LETTERS: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| InitError::Random(e.to_string()))?;
    Ok(bytes
        .iter()
        .map(|b| LETTERS[usize::from(*b) % LETTERS.len()] as char)
        .collect())
}

fn create_database(path: &Path) -> Result<(), InitError> {
    let rt = ivr_data::source::runtime()?;
    let target = ivr_data::connect::Target::SqliteFile(path.to_path_buf());
    rt.block_on(async {
        let pool = ivr_data::connect::open(&target, 1).await?;
        let r = ivr_data::connect::execute_script(&pool, STARTER_SQL).await;
        pool.close().await;
        r
    })?;
    Ok(())
}

/// The table the flow looks up, with a few accounts.
const STARTER_SQL: &str = "
CREATE TABLE accounts (
    phone   TEXT PRIMARY KEY,       -- the calling number
    name    TEXT NOT NULL,
    balance NUMERIC NOT NULL        -- in yuan
);
INSERT INTO accounts (phone, name, balance) VALUES
    ('13800000001', 'Zhang San', 58.30),
    ('13800000002', 'Li Si', 120.00),
    ('13800000003', 'Wang Wu', 0.00);
";

const GITIGNORE: &str = "# Written by `ivr serve` and `ivr simulate`: call records, voice messages.
/recordings/
/data/*.db-wal
/data/*.db-shm
";

const IVR_TOML: &str = r#"# A project made by `ivr init`. Paths are relative to this file; `ivr` reads ./ivr.toml
# unless `--config FILE` names another. Every key is checked by `ivr check`.

[paths]
flows      = "flows"                  # every *.flow below it is loaded and watched
prompts    = "prompts"                # prompts/<language>/prompts.toml and the audio files
recordings = "recordings"             # voice messages left with `record` nodes

[server]                              # `ivr serve`; --sip and --http override
sip   = "0.0.0.0:5060"                # UDP and TCP
http  = "127.0.0.1:8080"              # the phone page, the agent console, dashboard, metrics
realm = "ivr"                         # SIP digest realm, part of every agent's ha1

[database]
url = "sqlite://data/ivr.db"          # the accounts table, and the call records; or postgres://...

# Every query a flow may run. Parameters are bound ($1), never spliced into the SQL.
[queries.account_by_phone]
args   = ["phone"]
sql    = "SELECT name, balance FROM accounts WHERE phone = $1"
fields = { name = "text", balance = "money" }

[queues.support]
skills = []

# Agents log in to http://127.0.0.1:8080/agent and register a SIP phone as sip:1001@<host>.
# ha1 = MD5("1001:ivr:<password>"): `ivr agent-password 1001` prints a new one.
[agents.1001]
name = "First agent"
ha1  = "{HA1}"

[routes]
default = "hotline"                   # every dialled number runs flows/hotline.flow
"#;

const MAIN_FLOW: &str = r##"# The starter flow of `ivr init`: a menu, a lookup in the database, a transfer to an agent,
# and voice mail when no agent can take the call. `ivr check` checks it, `ivr test` runs
# flows/hotline.scenario against it, `ivr simulate hotline` calls it in the terminal.

flow hotline {
    title    "Starter hotline"
    language en-US
    entry    welcome
}

step welcome {
    play welcome
    goto main_menu
}

menu main_menu {
    prompt   main_menu                  # "For your balance, press 1. To speak to an agent, ..."
    timeout  5s                         # after the prompt has ended
    attempts 3 -> goodbye               # three times no key or a wrong key
    no_input play no_input
    no_match play invalid_choice
    key 1 -> balance_lookup
    key 0 -> agent
    key 9 -> leave_message
    key * -> repeat                     # the prompt again
}

# [queries.account_by_phone] in ivr.toml, on the accounts table of data/ivr.db. `account`
# exists on the `found` path only: `ivr check` refuses a read of it anywhere else.
lookup balance_lookup {
    query   account_by_phone(caller) into account
    timeout 2s
    found   -> balance
    missing -> not_a_customer
    error   -> system_busy
}

step balance {
    served "balance"                    # a self-service task completed (ivr report counts it)
    play balance_is
    say money account.balance           # "fifty-eight yuan and thirty cents"
    goto main_menu
}

step not_a_customer {
    play not_a_customer
    goto main_menu
}

step system_busy {
    play system_busy
    goto goodbye
}

transfer agent {
    queue     support                   # [queues.support] in ivr.toml
    attach    caller                    # shown to the agent when the call arrives
    music     hold_music                # looped while the caller waits
    max_wait  60s -> leave_message      # nobody answered within a minute
    no_agents -> leave_message          # nobody logged in
    after     -> goodbye                # the agent hung up first
}

# Voice mail: the file goes below [paths] recordings, a row into `recordings`. Agents of
# `support` hear it in the console's inbox (the queue of the transfer that led here).
record leave_message {
    prompt     leave_message
    beep
    max        60s
    silence    5s
    terminator "#"
    save       messages
    next       message_saved
}

step message_saved {
    play message_saved
    goto goodbye
}

step goodbye {
    play goodbye
    hangup
}
"##;

const MAIN_SCENARIO: &str = r##"# Scenarios of flows/hotline.flow: `ivr test` runs them all; `ivr test --coverage` lists what
# none of them reaches. A query a scenario does not mock runs against the configured database.

scenario "A customer hears the balance from the database"
flow    hotline
caller  "13800000001"                   # in the accounts table of data/ivr.db

expect  play welcome
expect  play main_menu
press   1
expect  served balance
expect  play balance_is
expect  say money 58.30
expect  play main_menu
hangup
expect  outcome self_service

scenario "An unknown number has no balance"
flow    hotline
caller  "02000000000"
mock    account_by_phone -> missing

expect  play welcome
expect  play main_menu
press   1
expect  play not_a_customer
expect  play main_menu
hangup

scenario "No agent is logged in: the caller leaves a message"
flow    hotline
caller  "13800000002"

expect  play welcome
expect  play main_menu
press   0
expect  transfer queue support
...
agent   none
expect  play leave_message
expect  record leave_message
wait    3s
press   "#"
expect  saved messages { caller: "13800000002", length: 3 }
expect  play message_saved
expect  play goodbye
expect  hangup

scenario "An agent answers"
flow    hotline
caller  "13800000003"

expect  play welcome
expect  play main_menu
press   0
expect  transfer queue support
...
agent   answers
agent   hangs_up
expect  play goodbye
expect  hangup
expect  outcome transferred

scenario "Three wrong keys end the call"
flow    hotline
caller  "13800000001"

expect  play welcome
expect  play main_menu
press   5
expect  play invalid_choice
expect  play main_menu
press   6
expect  play invalid_choice
expect  play main_menu
press   7
expect  play goodbye
expect  hangup
"##;

const PROMPTS: &str = r#"# The prompts of the starter flow, en-US. Each entry: id = { text = "..." }; the audio
# file defaults to <id>.wav in this folder. `ivr prompts generate` speaks the texts that have
# no audio yet (espeak-ng) and records what each file says in audio.toml; after a text
# changes, `ivr check` warns until the audio is generated or recorded again. Spoken values
# (amounts, digits, dates) are built into ivr.

welcome        = { text = "Welcome to customer service." }
main_menu      = { text = "For your balance, press 1. To speak to an agent, press 0. To leave a message, press 9. To hear these options again, press star." }
no_input       = { text = "Sorry, we did not hear your choice." }
invalid_choice = { text = "Sorry, that is not a valid choice." }
balance_is     = { text = "Your balance is" }
not_a_customer = { text = "Your number is not registered with us." }
system_busy    = { text = "We are sorry, our system is busy. Please call again later." }
hold_music     = { text = "Please hold while we connect you to an agent." }
leave_message  = { text = "Please leave a message after the tone, and press pound when you are done." }
message_saved  = { text = "Your message has been saved. We will call you back soon." }
goodbye        = { text = "Thank you for calling. Goodbye." }
"#;
