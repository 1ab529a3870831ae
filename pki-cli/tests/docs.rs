//! The user docs are true by construction.
//!
//! - Every ```` ```console ```` block in `docs/*.md` is executed: lines
//!   starting with `$ ` are commands (run with `bash`), the lines after one,
//!   up to the next `$ `, are its expected output (stdout and stderr
//!   together). The blocks of one doc run in order, in one fresh temporary
//!   directory per doc that holds a copy of the repository's `fixtures/`,
//!   with `kpki` (this build) first on `PATH`. `cd` carries over to the next
//!   command, and so does the exit status (for `echo $?`).
//! - Expected output may elide: a line that is only `…` stands for any
//!   number of lines, and `…` inside a line for any text. Volatile values are
//!   masked on both sides before comparing (dates, times, durations such as
//!   `364d`, serials and fingerprints, base64 blobs, bootstrap tokens, the
//!   temporary directory), and runs of blanks compare equal.
//! - A fenced block whose info string has `file=NAME` (```` ```toml
//!   file=kpki.toml ````) is written to NAME in the current directory when
//!   the run reaches it, so the files a doc shows are the files it uses.
//! - A block opts out only with ```` ```console manual ````; the opted-out
//!   blocks are counted and printed.
//! - `KPKI_BLESS_DOCS=1 cargo test -p pki-cli --test docs` rewrites the
//!   expected output in the docs from the real run: lines that still match
//!   (after masking) are kept as written, `…` lines are kept, the rest is
//!   replaced by what the command printed (secrets masked).
//!   `KPKI_BLESS_DOCS=full` writes every command's whole output instead (no
//!   elisions), to trim by hand after a large change of format.
//!
//! Also: no doc refers to the contract outside this repository.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;

use common::root;
use regex::Regex;

/// The marker of an elision.
const ELLIPSIS: &str = "…";

/// One command of a console block and the output the doc shows for it.
#[derive(Debug)]
struct Cmd {
    /// 0-based line index of the `$ ` line in the doc.
    line: usize,
    text: String,
    /// 0-based line indices and text of the expected output.
    expected: Vec<(usize, String)>,
}

#[derive(Debug)]
struct Block {
    /// 0-based line index of the opening fence.
    line: usize,
    no_run: bool,
    cmds: Vec<Cmd>,
}

/// A fenced block that a doc's commands use, in document order.
#[derive(Debug)]
enum Item {
    /// ```` ```console ````: commands and their output.
    Console(Block),
    /// ```` ```LANG file=NAME ````: written to NAME in the working
    /// directory before the console blocks after it run.
    File { name: String, content: String },
}

/// The console blocks and file blocks of a markdown text.
fn console_blocks(md: &str, name: &str) -> Vec<Item> {
    let lines: Vec<&str> = md.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if let Some(file) = l.strip_prefix("```").and_then(|info| {
            info.split_whitespace()
                .find_map(|w| w.strip_prefix("file="))
        }) {
            let start = i;
            let mut content = String::new();
            i += 1;
            while i < lines.len() && lines[i] != "```" {
                content.push_str(lines[i]);
                content.push('\n');
                i += 1;
            }
            assert!(i < lines.len(), "{name}:{}: unclosed block", start + 1);
            blocks.push(Item::File {
                name: file.to_string(),
                content,
            });
            i += 1;
            continue;
        }
        let Some(info) = l.strip_prefix("```console") else {
            i += 1;
            continue;
        };
        let info = info.trim();
        assert!(
            info.is_empty() || info == "manual",
            "{name}:{}: unknown console block marker `{info}` (only `manual`)",
            i + 1
        );
        let mut block = Block {
            line: i,
            no_run: info == "manual",
            cmds: Vec::new(),
        };
        i += 1;
        while i < lines.len() && lines[i] != "```" {
            let l = lines[i];
            if let Some(cmd) = l.strip_prefix("$ ") {
                block.cmds.push(Cmd {
                    line: i,
                    text: cmd.to_string(),
                    expected: Vec::new(),
                });
            } else {
                let Some(cmd) = block.cmds.last_mut() else {
                    panic!(
                        "{name}:{}: a console block starts with a `$ ` command",
                        i + 1
                    );
                };
                cmd.expected.push((i, l.to_string()));
            }
            i += 1;
        }
        assert!(
            i < lines.len(),
            "{name}:{}: unclosed console block",
            block.line + 1
        );
        blocks.push(Item::Console(block));
        i += 1;
    }
    blocks
}

fn re(s: &str) -> Regex {
    Regex::new(s).unwrap()
}

static BASE64: LazyLock<Regex> = LazyLock::new(|| re(r"[A-Za-z0-9+/]{40,}={0,2}"));
static TOKEN: LazyLock<Regex> = LazyLock::new(|| re(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b"));
static TOKEN_FIELD: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(token-secret|token-id)(["']?:\s*["']?)[a-z0-9]+"#));
static TOKEN_ID: LazyLock<Regex> = LazyLock::new(|| re(r"bootstrap-token-[a-z0-9]{6}\b"));
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}| ?UTC)?)?")
});
static OPENSSL_DATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4}(?: GMT)?"));
static TIME: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{2}:\d{2}:\d{2}\b"));
static DURATION: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d+[dhy]\b"));
static ELAPSED: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d+(?:\.\d+)?(?:ms|µs|s)\b"));
static HEX_COLON: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){7,}\b"));
static HEX: LazyLock<Regex> = LazyLock::new(|| re(r"\b[0-9a-fA-F]{16,}\b"));
static BLANKS: LazyLock<Regex> = LazyLock::new(|| re(r"\s+"));

/// Hides what must never be written into a doc: key material, token
/// secrets, the temporary directory. Applied to real output before blessing.
fn redact(line: &str, tmp: &str) -> String {
    let line = line.replace(tmp, "<tmp>");
    let line = BASE64.replace_all(&line, |c: &regex::Captures| {
        let s = &c[0];
        let looks_random = s.bytes().any(|b| b.is_ascii_uppercase())
            && s.bytes().any(|b| b.is_ascii_lowercase())
            && s.bytes().any(|b| b.is_ascii_digit());
        if looks_random {
            format!("<base64 {ELLIPSIS}>")
        } else {
            s.to_string()
        }
    });
    let line = TOKEN.replace_all(&line, "<token>");
    let line = TOKEN_FIELD.replace_all(&line, "$1$2<token>");
    line.trim_end().to_string()
}

/// Both sides of a comparison: redacted, volatile values masked, blanks
/// collapsed.
fn mask(line: &str, tmp: &str) -> String {
    let line = redact(line, tmp);
    let line = TOKEN_ID.replace_all(&line, "bootstrap-token-<id>");
    let line = DATE.replace_all(&line, "<date>");
    let line = OPENSSL_DATE.replace_all(&line, "<date>");
    let line = TIME.replace_all(&line, "<time>");
    let line = HEX_COLON.replace_all(&line, "<hex>");
    let line = HEX.replace_all(&line, "<hex>");
    let line = DURATION.replace_all(&line, "<dur>");
    let line = ELAPSED.replace_all(&line, "<elapsed>");
    BLANKS.replace_all(line.trim(), " ").into_owned()
}

/// An expected line, masked, as a matcher.
enum Pattern {
    /// `…` alone: any number of lines.
    Any,
    Exact(String),
    Wild(Regex),
}

fn pattern(expected: &str, tmp: &str) -> Pattern {
    if expected.trim() == ELLIPSIS {
        return Pattern::Any;
    }
    let m = mask(expected, tmp);
    if m.contains(ELLIPSIS) {
        let parts: Vec<String> = m.split(ELLIPSIS).map(regex::escape).collect();
        Pattern::Wild(re(&format!("^{}$", parts.join(".*"))))
    } else {
        Pattern::Exact(m)
    }
}

impl Pattern {
    fn matches(&self, actual_masked: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => e == actual_masked,
            Pattern::Wild(r) => r.is_match(actual_masked),
        }
    }
}

/// One step of the alignment of expected with actual lines.
enum Step {
    /// An expected line (index) matched an actual one.
    Match(usize),
    /// `…` (expected index) absorbing zero or more actual lines.
    Skip(usize),
    Missing(usize),
    Extra(usize),
}

/// Aligns the expected lines with the actual ones, with the fewest
/// unmatched lines.
fn align(pats: &[Pattern], actual: &[String]) -> Vec<Step> {
    let (m, n) = (pats.len(), actual.len());
    // cost[i][j]: fewest unmatched lines aligning pats[i..] with actual[j..].
    let mut cost = vec![vec![0usize; n + 1]; m + 1];
    for i in (0..=m).rev() {
        for j in (0..=n).rev() {
            cost[i][j] = if i == m {
                n - j
            } else if let Pattern::Any = pats[i] {
                let mut c = cost[i + 1][j];
                if j < n {
                    c = c.min(cost[i][j + 1]);
                }
                c
            } else {
                let mut c = 1 + cost[i + 1][j];
                if j < n {
                    c = c.min(1 + cost[i][j + 1]);
                    if pats[i].matches(&actual[j]) {
                        c = c.min(cost[i + 1][j + 1]);
                    }
                }
                c
            };
        }
    }
    let mut steps = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < m || j < n {
        if i == m {
            steps.push(Step::Extra(j));
            j += 1;
        } else if let Pattern::Any = pats[i] {
            // Absorb as much as an optimal alignment allows.
            while j < n && cost[i][j] == cost[i][j + 1] {
                j += 1;
            }
            steps.push(Step::Skip(i));
            i += 1;
        } else if j < n && pats[i].matches(&actual[j]) && cost[i][j] == cost[i + 1][j + 1] {
            steps.push(Step::Match(i));
            i += 1;
            j += 1;
        } else if cost[i][j] == 1 + cost[i + 1][j] {
            steps.push(Step::Missing(i));
            i += 1;
        } else {
            steps.push(Step::Extra(j));
            j += 1;
        }
    }
    steps
}

/// The result of running one command.
struct Outcome {
    /// The replacement for the expected lines (bless mode).
    blessed: Vec<String>,
    /// A readable diff, when the output differs.
    diff: Option<String>,
}

fn compare(doc: &str, cmd: &Cmd, raw: &str, tmp: &str, full: bool) -> Outcome {
    let mut actual_raw: Vec<&str> = raw.lines().collect();
    while actual_raw.last().is_some_and(|l| l.trim().is_empty()) {
        actual_raw.pop();
    }
    let mut expected: Vec<&(usize, String)> = cmd.expected.iter().collect();
    while expected.last().is_some_and(|(_, l)| l.trim().is_empty()) {
        expected.pop();
    }
    let actual: Vec<String> = actual_raw.iter().map(|l| mask(l, tmp)).collect();
    let pats: Vec<Pattern> = expected.iter().map(|(_, l)| pattern(l, tmp)).collect();
    let steps = align(&pats, &actual);
    let mut blessed = Vec::new();
    let mut diff = String::new();
    let mut bad = false;
    for s in &steps {
        match s {
            Step::Match(i) | Step::Skip(i) => blessed.push(expected[*i].1.clone()),
            Step::Missing(i) => {
                bad = true;
                let (line, text) = expected[*i];
                writeln!(diff, "  {doc}:{:<5} - {text}", line + 1).unwrap();
            }
            Step::Extra(j) => {
                bad = true;
                let l = redact(actual_raw[*j], tmp);
                writeln!(diff, "  {:<width$} + {l}", "", width = doc.len() + 6).unwrap();
                blessed.push(l);
            }
        }
    }
    if full && steps.iter().any(|s| matches!(s, Step::Skip(_))) {
        bad = true;
        blessed = actual_raw.iter().map(|l| redact(l, tmp)).collect();
    }
    Outcome {
        blessed,
        diff: bad.then(|| {
            format!(
                "{doc}:{}: `$ {}` printed something else (- expected in the doc, + actual; `KPKI_BLESS_DOCS=1 cargo test -p pki-cli --test docs` rewrites the doc):\n{diff}",
                cmd.line + 1,
                cmd.text
            )
        }),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ty = e.file_type().unwrap();
        if ty.is_dir() {
            copy_dir(&src, &dst);
        } else if ty.is_file() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A temporary directory laid out like the repository root, as the docs
/// assume: `fixtures/` is there.
fn doc_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root().join("fixtures"), &dir.path().join("fixtures"));
    dir
}

/// Runs one command line in `cwd` with bash; returns (output, exit status,
/// the working directory it left).
fn run(cmd: &str, cwd: &Path, last_status: i32, tmp: &Path) -> (String, i32, PathBuf) {
    let kpki = PathBuf::from(env!("CARGO_BIN_EXE_kpki"));
    let bin = kpki.parent().unwrap();
    let state = tmp.join(".docs-pwd");
    let script = format!(
        "exec 2>&1\ncd '{}' || exit 97\n(exit {last_status})\n{cmd}\n__docs_rc=$?\npwd > '{}'\nexit $__docs_rc\n",
        cwd.display(),
        state.display()
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &script])
        .env("PATH", path)
        .env("HOME", tmp)
        .env("LC_ALL", "C")
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .env("COLUMNS", "200")
        .env_remove("RAYON_NUM_THREADS")
        .env_remove("KPKI_BLESS_DOCS")
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    let status = out.status.code().unwrap_or(128);
    let cwd = std::fs::read_to_string(&state)
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or_else(|_| cwd.to_path_buf());
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (text, status, cwd)
}

/// The docs, sorted by name.
fn docs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    v.sort();
    v
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bless {
    No,
    /// Keep what matches and the elisions.
    Keep,
    /// Whole outputs.
    Full,
}

#[derive(Default)]
struct Tally {
    run: usize,
    no_run: Vec<String>,
    commands: usize,
}

/// Runs every console block of one doc; returns the failures (bless mode:
/// rewrites the doc instead).
fn run_doc(path: &Path, bless: Bless, tally: &mut Tally) -> Vec<String> {
    let name = format!(
        "docs/{}",
        path.file_name().unwrap().to_string_lossy().into_owned()
    );
    let md = std::fs::read_to_string(path).unwrap();
    let blocks = console_blocks(&md, &name);
    if blocks.is_empty() {
        return Vec::new();
    }
    let dir = doc_dir();
    let tmp = dir.path().canonicalize().unwrap();
    let tmp_str = tmp.display().to_string();
    let mut cwd = tmp.clone();
    let mut status = 0;
    let mut failures = Vec::new();
    // (first line, end line exclusive, replacement) per command.
    let mut edits: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let lines: Vec<&str> = md.lines().collect();
    for item in &blocks {
        let b = match item {
            Item::File { name, content } => {
                std::fs::write(cwd.join(name), content).unwrap();
                continue;
            }
            Item::Console(b) => b,
        };
        if b.no_run {
            tally.no_run.push(format!("{name}:{}", b.line + 1));
            continue;
        }
        tally.run += 1;
        for (k, c) in b.cmds.iter().enumerate() {
            tally.commands += 1;
            let (out, st, next) = run(&c.text, &cwd, status, &tmp);
            status = st;
            cwd = next;
            let o = compare(&name, c, &out, &tmp_str, bless == Bless::Full);
            if let Some(d) = o.diff {
                let end = b.cmds.get(k + 1).map_or_else(
                    || {
                        // up to the closing fence
                        (c.line + 1..lines.len())
                            .find(|&l| lines[l] == "```")
                            .unwrap()
                    },
                    |n| n.line,
                );
                edits.push((c.line + 1, end, o.blessed));
                failures.push(d);
            }
        }
    }
    if bless != Bless::No && !edits.is_empty() {
        let mut new: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        for (start, end, repl) in edits.into_iter().rev() {
            new.splice(start..end, repl);
        }
        let mut text = new.join("\n");
        if md.ends_with('\n') {
            text.push('\n');
        }
        std::fs::write(path, text).unwrap();
        eprintln!("blessed {name}");
    }
    failures
}

#[test]
fn console_blocks_print_what_the_docs_show() {
    let bless = match std::env::var("KPKI_BLESS_DOCS").as_deref() {
        Ok("1") => Bless::Keep,
        Ok("full") => Bless::Full,
        Ok(other) => panic!("KPKI_BLESS_DOCS is 1 or full, not {other:?}"),
        Err(_) => Bless::No,
    };
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for doc in docs() {
        failures.extend(run_doc(&doc, bless, &mut tally));
    }
    eprintln!(
        "docs: {} console block(s) executed ({} command(s)), {} opted out with `manual`: {}",
        tally.run,
        tally.commands,
        tally.no_run.len(),
        tally.no_run.join(", ")
    );
    assert!(tally.run >= 10, "expected the docs to run console blocks");
    assert!(
        tally.no_run.len() <= 3,
        "too many `manual` console blocks: {:?}",
        tally.no_run
    );
    if bless != Bless::No {
        return;
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The elision, masking and alignment rules the runner relies on.
#[test]
fn runner_masks_elides_and_reports_differences() {
    let tmp = "/tmp/.tmpXYZ";
    // volatile values compare equal
    assert_eq!(
        mask("apiserver  pki/a.crt  2027-11-23  364d  N002", tmp),
        mask("apiserver pki/a.crt 2031-01-02 10y N002", tmp)
    );
    assert_ne!(mask("N002", tmp), mask("N003", tmp));
    // key material never reaches a doc
    let blob = "MIIBkTCB+wIJAKHHIG2sK3aWMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnVu";
    assert_eq!(
        redact(&format!("    client-key-data: {blob}"), tmp),
        "    client-key-data: <base64 …>"
    );
    assert_eq!(
        redact("token: abcdef.0123456789abcdef", tmp),
        "token: <token>"
    );
    assert_eq!(redact("/tmp/.tmpXYZ/out", tmp), "<tmp>/out");
    // paths are not blobs
    assert_eq!(
        redact("out/nodes/i1/etc/kubernetes/pki/etcd/healthcheck", tmp),
        "out/nodes/i1/etc/kubernetes/pki/etcd/healthcheck"
    );
    let cmd = Cmd {
        line: 9,
        text: "kpki plan".into(),
        expected: ["a", "…", "d 2020-01-01", "e: …", "gone"]
            .iter()
            .enumerate()
            .map(|(i, l)| (10 + i, l.to_string()))
            .collect(),
    };
    // `…` absorbs lines, inline `…` any text, dates are masked
    let ok = compare(
        "docs/x.md",
        &cmd,
        "a\nb\nc\nd 2099-12-31\ne: long\ngone\n",
        tmp,
        false,
    );
    assert!(ok.diff.is_none());
    // a difference names the doc line and blessing keeps what matched
    let bad = compare(
        "docs/x.md",
        &cmd,
        "a\nb\nd 2099-12-31\ne: x\nnew\n",
        tmp,
        false,
    );
    let diff = bad.diff.unwrap();
    assert!(diff.contains("docs/x.md:15    - gone"), "{diff}");
    assert!(diff.contains("+ new"), "{diff}");
    assert_eq!(bad.blessed, ["a", "…", "d 2020-01-01", "e: …", "new"]);
}

/// The docs stand alone: no reference to a contract outside this
/// repository.
#[test]
fn docs_do_not_refer_outside_the_repository() {
    let mut files = docs();
    files.push(root().join("README.md"));
    let mut bad = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, l) in text.lines().enumerate() {
            for word in ["SPEC.md", "PKI-RULES.md", "../shared", "PKI-RULES"] {
                if l.contains(word) {
                    bad.push(format!("{}:{}: {word}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "docs refer outside the repository:\n{}",
        bad.join("\n")
    );
}

/// The embedding guide's Rust blocks are doc-tests of pki-core
/// (`cargo test -p pki-core --doc` compiles and runs them), and none of the
/// docs' Rust blocks is skipped with `ignore`.
#[test]
fn rust_blocks_are_compiled_by_doc_tests() {
    let lib = std::fs::read_to_string(root().join("pki-core/src/lib.rs")).unwrap();
    assert!(
        lib.contains(r#"#[doc = include_str!("../../docs/embedding.md")]"#),
        "pki-core/src/lib.rs must include docs/embedding.md as doc-tests"
    );
    let mut rust_blocks = 0;
    for doc in docs() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (n, l) in text.lines().enumerate() {
            if let Some(info) = l.strip_prefix("```rust") {
                rust_blocks += usize::from(doc.ends_with("embedding.md"));
                assert!(
                    !info.contains("ignore"),
                    "{}:{}: a Rust block is `ignore`d; use `no_run` for code that needs files",
                    doc.display(),
                    n + 1
                );
            }
        }
    }
    assert!(rust_blocks >= 5, "the embedding guide shows its code");
}
