//! Log output: colour only on a terminal and never with NO_COLOR; plain lines otherwise.
//! The terminal is a pseudo-terminal from util-linux `script`.

mod common;

use common::*;
use std::process::Command;

const ESC: char = '\u{1b}';

/// Runs `payctl down --env dev` (nothing to delete) with `NO_COLOR` set or not, on a
/// pseudo-terminal or with stderr piped; returns what it wrote to stderr (or the terminal).
fn run(stack: &Stack, no_color: Option<&str>, terminal: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_payctl");
    let mut cmd = if terminal {
        let mut c = Command::new("script");
        c.args(["-qec", &format!("{bin} down --env dev"), "/dev/null"]);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(["down", "--env", "dev"]);
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
        run(&stack, None, true).contains(ESC),
        "no colour on a terminal"
    );
    assert!(
        !run(&stack, Some("1"), true).contains(ESC),
        "colour despite NO_COLOR"
    );
    assert!(!run(&stack, None, false).contains(ESC), "colour in a pipe");
}
