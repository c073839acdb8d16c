//! The docs' command examples are snapshot tests: every ```` ```console ```` block of `docs/*.md`
//! runs, in document order, against a fresh database per file, and each command's output must
//! match the lines the docs show under it. So the docs cannot drift from the CLI.
//!
//! The rules (kept small, so that the docs stay plain shell a reader can paste):
//! - `$ importer-admin …` runs the binary; `$ cargo run --release -p importer-admin -- …` too.
//!   `$ export NAME=value` sets a variable for the later commands of the file; `$NAME` and
//!   `"$NAME"` expand from those and from the harness (`SIM_CONFIG`, `SIM_MAILCHIMP_URL`,
//!   `SIM_DESTINATION_URL`: the simulators it started). A value with `$(…)` is left to the
//!   harness, which sets those variables itself. Anything else (pipes, redirections, other
//!   programs) fails the test: such examples belong in a `sh` block.
//! - A trailing `  # comment` is not part of the command; `\` continues a command.
//! - Output lines match exactly, except that `[..]` matches any text within a line and a line
//!   `…` matches any number of lines. No output lines: the output is not checked. A first line
//!   starting `error:` means the command must fail; otherwise it must succeed.
//! - `<!-- docs-test: … -->` before a block: `worker start` / `worker stop` (an in-process
//!   worker), `wait idle` (until no run is active), `skip: why` (the next block is not run,
//!   e.g. a server that runs until Ctrl-C; its commands are still parsed by the CLI's unit test).
//! - `DOCS_DUMP=1` prints every command's actual output, to refresh an example.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::import::{start_worker, worker_config};
use common::url_for;
use importer_core::secrets::SecretBox;
use importer_sim::{Sim, SimConfig};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// What a docs file holds, in order.
#[derive(Debug)]
enum Item {
    /// A harness directive.
    Directive(String),
    /// A console block: its steps.
    Block(Vec<Step>),
}

/// One `$ command` and the output the docs show for it.
#[derive(Debug)]
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn parse(text: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((_, line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("<!-- docs-test:") {
            items.push(Item::Directive(
                rest.trim_end_matches("-->").trim().to_owned(),
            ));
            continue;
        }
        if line.trim() != "```console" {
            continue;
        }
        let mut steps: Vec<Step> = Vec::new();
        while let Some((m, line)) = lines.next() {
            if line.trim() == "```" {
                break;
            }
            if let Some(command) = line.strip_prefix("$ ") {
                let mut command = command.to_owned();
                while command.trim_end().ends_with('\\') {
                    command = command.trim_end().trim_end_matches('\\').to_owned();
                    let (_, next) = lines.next().expect("a continued line");
                    command.push(' ');
                    command.push_str(next.trim());
                }
                steps.push(Step {
                    line: m + 1,
                    command,
                    expected: Vec::new(),
                });
            } else if let Some(step) = steps.last_mut() {
                step.expected.push(line.to_owned());
            } else {
                panic!("line {}: output before any command", m + 1);
            }
        }
        items.push(Item::Block(steps));
    }
    items
}

/// The command without its trailing comment.
fn strip_comment(command: &str) -> &str {
    match command.find("  #").or_else(|| command.find(" # ")) {
        Some(at) => command[..at].trim_end(),
        None => command.trim_end(),
    }
}

/// Runs of spaces as one: a table column's padding depends on the width of what `[..]` hides.
fn squeeze(line: &str) -> String {
    line.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `actual` matches `pattern`, where `[..]` matches any text (and, on such a line, runs
/// of spaces match runs of any length).
fn line_matches(pattern: &str, actual: &str) -> bool {
    if !pattern.contains("[..]") {
        return pattern.trim_end() == actual.trim_end();
    }
    let (pattern, actual) = (squeeze(pattern), squeeze(actual));
    let parts: Vec<&str> = pattern.split("[..]").collect();
    let actual = actual.as_str();
    let Some(mut rest) = actual.strip_prefix(parts[0]) else {
        return false;
    };
    let last = parts.len() - 1;
    for (i, part) in parts.iter().enumerate().skip(1) {
        let part = if i == last { part.trim_end() } else { part };
        if i == last {
            return rest.ends_with(part) && rest.len() >= part.len();
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the lines match, `…` lines matching any number of lines.
fn lines_match(pattern: &[String], actual: &[&str]) -> bool {
    match pattern.split_first() {
        None => actual.iter().all(|l| l.trim().is_empty()),
        Some((p, rest)) if p.trim() == "…" => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((p, rest)) => match actual.split_first() {
            Some((a, more)) => line_matches(p, a) && lines_match(rest, more),
            None => false,
        },
    }
}

/// The docs' session: the database, the simulators, the variables, an optional worker.
struct Session {
    pool: PgPool,
    url: String,
    vars: HashMap<String, String>,
    sim: Sim,
    dir: PathBuf,
    worker: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<importer_worker::WorkerReport>>,
    )>,
}

/// The simulators' accounts the docs seed (`SIM_CONFIG`); small, so runs end in seconds.
const SIM_CONFIG: &str = r#"
seed = 42

[mailchimp]
latency_base_ms = 5
latency_per_member_us = 2

[[accounts]]
name = "acme"
api_key = "0a1b2c3d4e5f60718293a4b5c6d7e8f9-us6"
destination_key = "dest-acme-5b1f0c"
lists = [
  { id = "a1c0ffee01", members = 2500 },
  { id = "a1c0ffee02", members = 1200 },
]

[[accounts]]
name = "globex"
api_key = "1f2e3d4c5b6a79880796a5b4c3d2e1f0-us13"
destination_key = "dest-globex-93e2aa"
lists = [
  { id = "b2d0cafe01", members = 10000 },
]
"#;

impl Session {
    async fn start(pool: PgPool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "importer-docs-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("sim.toml");
        std::fs::write(&config_path, SIM_CONFIG).unwrap();
        let config: SimConfig = toml::from_str(SIM_CONFIG).unwrap();
        let sim = importer_sim::start(config).await.unwrap();
        let url = url_for(&pool);
        let mut vars = HashMap::new();
        for (k, v) in [
            ("SIM_CONFIG", config_path.display().to_string()),
            ("SIM_MAILCHIMP_URL", sim.mailchimp_url()),
            ("SIM_DESTINATION_URL", sim.destination_url()),
            ("IMPORTER_SECRET_KEY", SecretBox::generate_key_hex()),
            ("IMPORTER_SECRET_KEY_PREVIOUS", String::new()),
        ] {
            vars.insert(k.to_owned(), v);
        }
        Session {
            pool,
            url,
            vars,
            sim,
            dir,
            worker: None,
        }
    }

    fn expand(&self, word: &str) -> String {
        let mut out = String::new();
        let mut rest = word;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let name: String = rest[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(!name.is_empty(), "a lone $ in {word:?}");
            let value = self
                .vars
                .get(&name)
                .unwrap_or_else(|| panic!("${name} is not set (export it in the docs first)"));
            out.push_str(value);
            rest = &rest[at + 1 + name.len()..];
        }
        out.push_str(rest);
        out
    }

    async fn directive(&mut self, directive: &str) -> bool {
        match directive {
            "worker start" => {
                let secrets = SecretBox::from_hex(&self.vars["IMPORTER_SECRET_KEY"]).unwrap();
                let stop = CancellationToken::new();
                let task = start_worker(
                    worker_config("worker-1"),
                    self.pool.connect_options().as_ref().clone(),
                    secrets,
                    stop.clone(),
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                if task.is_finished() {
                    panic!("the docs' worker stopped at once: {:?}", task.await);
                }
                self.worker = Some((stop, task));
            }
            "worker stop" => {
                let (stop, task) = self.worker.take().expect("a worker to stop");
                stop.cancel();
                task.await.unwrap().unwrap();
            }
            "wait idle" => {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let active: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM importer.runs WHERE status IN ('planning', 'running')",
                    )
                    .fetch_one(&self.pool)
                    .await
                    .unwrap();
                    if active == 0 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "runs still active after 60 s");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            skip if skip.starts_with("skip:") => return true,
            other => panic!("unknown docs-test directive {other:?}"),
        }
        false
    }

    /// Runs one step; returns why it does not match the docs, if it does not.
    async fn step(&mut self, file: &Path, step: &Step) -> Option<String> {
        let command = strip_comment(&step.command);
        let words = shlex::split(command).unwrap_or_else(|| {
            panic!("{}:{}: cannot split {command:?}", file.display(), step.line)
        });
        let words: Vec<String> = words.iter().map(|w| self.expand(w)).collect();
        let args: &[String] = match words.as_slice() {
            [export, assignment] if export == "export" => {
                let (name, value) = assignment.split_once('=').expect("export NAME=value");
                if !step.command.contains("$(") {
                    self.vars.insert(name.to_owned(), value.to_owned());
                }
                return None;
            }
            [bin, rest @ ..] if bin == "importer-admin" => rest,
            [cargo, run, release, p, package, dashes, rest @ ..]
                if [cargo, run, release, p, package, dashes]
                    == [&"cargo", &"run", &"--release", &"-p", &"importer-admin", &"--"] =>
            {
                rest
            }
            _ => panic!(
                "{}:{}: {command:?} is not an importer-admin command or an export (put it in a sh block)",
                file.display(),
                step.line
            ),
        };
        for word in args {
            assert!(
                !["|", "<", ">", "&&", ";"].contains(&word.as_str()),
                "{}:{}: shell syntax in {command:?} (put it in a sh block)",
                file.display(),
                step.line
            );
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_importer-admin"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.url)
            .env("USER", "docs")
            .envs(self.vars.iter().filter(|(_, v)| !v.is_empty()))
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        // Off the runtime: the in-process worker must go on while the command waits for it.
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap()
            .unwrap();
        if std::env::var_os("DOCS_DUMP").is_some() {
            // To refresh an example: DOCS_DUMP=1 cargo test -p importer-admin --test docs_examples
            eprintln!(
                "$ {}\n{}{}",
                step.command,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if step.expected.is_empty() {
            return (!output.status.success()).then(|| {
                format!(
                    "failed:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let text = format!("{stdout}{stderr}");
        let actual: Vec<&str> = text.lines().collect();
        let must_fail = step.expected[0].starts_with("error:");
        if must_fail == output.status.success() {
            return Some(format!(
                "exit status {:?}, the docs expect {}:\n{text}",
                output.status.code(),
                if must_fail { "a failure" } else { "success" }
            ));
        }
        (!lines_match(&step.expected, &actual)).then(|| {
            format!(
                "output differs.\n--- docs:\n{}\n--- actual:\n{text}",
                step.expected.join("\n")
            )
        })
    }

    async fn stop(mut self) {
        if let Some((stop, task)) = self.worker.take() {
            stop.cancel();
            let _ = task.await;
        }
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs every console block of `docs/<name>` and fails with every mismatch at once.
async fn check_docs(pool: PgPool, name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut session = Session::start(pool).await;
    let mut skip = false;
    let mut failures = Vec::new();
    let (mut checked, mut skipped) = (0, 0);
    for item in parse(&text) {
        match item {
            Item::Directive(d) => skip = session.directive(&d).await,
            Item::Block(steps) if std::mem::take(&mut skip) => skipped += steps.len(),
            Item::Block(steps) => {
                for step in &steps {
                    checked += 1;
                    if let Some(why) = session.step(&path, step).await {
                        failures.push(format!(
                            "docs/{name}:{}: $ {}\n{why}",
                            step.line, step.command
                        ));
                    }
                }
            }
        }
    }
    session.stop().await;
    assert!(checked + skipped > 0, "docs/{name} has no console example");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// From an empty database: its first example is `migrate`.
#[sqlx::test(migrations = false)]
async fn the_operator_guide_examples_match_the_cli(pool: PgPool) {
    check_docs(pool, "operator-guide.md").await;
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_operations_examples_match_the_cli(pool: PgPool) {
    check_docs(pool, "operations.md").await;
}

#[sqlx::test(migrator = "importer_core::MIGRATOR")]
async fn the_dashboard_examples_match_the_cli(pool: PgPool) {
    check_docs(pool, "dashboard.md").await;
}

#[test]
fn the_matcher_honours_wildcards_and_elisions() {
    assert!(line_matches("run [..] completed", "run 7 completed"));
    assert!(line_matches("a[..]", "abc  "));
    assert!(!line_matches("run [..] completed", "run 7 failed"));
    assert!(!line_matches("exact", "exact but longer"));
    // Padding next to a wildcard is free: a 5-digit rate is one space narrower than a 4-digit one.
    assert!(line_matches(
        "│ a ┆ [..]     ┆ 350 │",
        "│ a ┆ 11102 ┆ 350 │"
    ));
    assert!(line_matches(
        "│ a ┆ [..]     ┆ 350 │",
        "│ a ┆ 8790      ┆ 350 │"
    ));
    assert!(!line_matches("│ a ┆ [..] ┆ 350 │", "│ a ┆ 8790 ┆ 351 │"));
    let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(lines_match(&p(&["a", "…", "z"]), &["a", "b", "c", "z"]));
    assert!(lines_match(&p(&["a", "…"]), &["a"]));
    assert!(!lines_match(&p(&["a", "z"]), &["a", "b", "z"]));
    assert_eq!(
        strip_comment("importer-admin tick   # once"),
        "importer-admin tick"
    );
}
