//! Output: live per-kind progress lines and colour only on a terminal, colour never with
//! NO_COLOR, plain lines with `--no-progress` or when stderr is not a terminal. The
//! terminal is a pseudo-terminal from util-linux `script`.

mod common;

use common::*;
use std::process::Command;

const ESC: char = '\u{1b}';

/// Runs `payctl down --env dev` (nothing to delete) with `NO_COLOR` set or not, on a
/// pseudo-terminal or with stderr piped; returns what it wrote to stderr (or the terminal).
fn run(stack: &Stack, no_color: Option<&str>, terminal: bool, extra: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_payctl");
    let mut args = vec!["down", "--env", "dev"];
    args.extend(extra);
    let mut cmd = if terminal {
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{bin} {}", args.join(" ")), "/dev/null"]);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(&args);
        c
    };
    let base = stack.command();
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env_remove("NO_COLOR");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.current_dir(stack.home.path()).output().expect("run");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if terminal {
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    assert!(text.contains("down dev"), "no log line: {text}");
    text
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let stack = Stack::new("dev");
    assert!(
        run(&stack, None, true, &["--no-progress"]).contains(ESC),
        "no colour on a terminal"
    );
    let plain = run(&stack, Some("1"), true, &["--no-progress"]);
    assert!(!plain.contains(ESC), "colour despite NO_COLOR: {plain:?}");
    assert!(
        !run(&stack, None, false, &[]).contains(ESC),
        "colour in a pipe"
    );
}

/// A finished kind's live line: `<kind> … done (<elapsed>)`.
fn finished_line(text: &str, kind: &str) -> bool {
    text.lines()
        .any(|l| l.contains(kind) && l.contains(" done ("))
}

#[test]
fn a_terminal_gets_a_live_line_per_kind_and_a_pipe_plain_lines() {
    let stack = Stack::new("dev");
    let live = run(&stack, Some("1"), true, &[]);
    for kind in [
        "ec2_vpc",
        "rds_instance",
        "lambda_function",
        "cloudwatch_alarm",
    ] {
        assert!(
            finished_line(&live, kind),
            "no live line for {kind}: {live}"
        );
    }
    for (terminal, extra) in [(true, &["--no-progress"][..]), (false, &[][..])] {
        let plain = run(&stack, Some("1"), terminal, extra);
        assert!(!finished_line(&plain, "ec2_vpc"), "progress lines: {plain}");
        assert!(plain.contains("down dev: "), "no summary: {plain}");
    }
}
