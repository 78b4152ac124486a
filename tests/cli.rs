//! Bad input is refused with one clear line before any AWS call, and changes nothing.
//! These runs point AWS_ENDPOINT_URL at a closed port: an AWS call would fail differently.

mod common;

use common::payctl_command;
use std::net::TcpListener;

fn run(args: &[&str], extra_env: &[(&str, &str)]) -> (bool, String, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = payctl_command(home.path());
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("PAYCTL_STATE_DIR", home.path().join("state"));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        home,
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn invalid_env_names_are_refused_before_any_aws_call() {
    for env in [
        "Prod",
        "1abc",
        "a_b",
        "much-too-long-environment",
        "dev-",
        "",
    ] {
        let (ok, stderr, home) = run(&["up", "--env", env], &[]);
        assert!(!ok, "{env:?} accepted");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{env:?}: {stderr}");
        assert!(
            lines[0].starts_with("error: invalid environment name"),
            "{env:?}: {stderr}"
        );
        assert!(
            !home.path().join("state").exists(),
            "state dir created for {env:?}"
        );
    }
}

#[test]
fn env_falls_back_to_environment_suffix() {
    let (ok, stderr, _) = run(&["up"], &[("ENVIRONMENT_SUFFIX", "Bad_Env")]);
    assert!(!ok);
    assert!(
        stderr.contains("invalid environment name \"Bad_Env\""),
        "{stderr}"
    );
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    let cases = [
        ("[env.dev]\nnat_gatways = 2\n", "nat_gatways"),
        ("[env.dev]\nvpc_cidr = \"10.0.0.0/99\"\n", "vpc_cidr"),
        ("[env.dev]\nnat_gateways = \"three\"\n", "invalid type"),
    ];
    for (text, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payctl.toml");
        std::fs::write(&path, text).unwrap();
        let (ok, stderr, home) = run(
            &["up", "--env", "dev", "--config", path.to_str().unwrap()],
            &[],
        );
        assert!(!ok);
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with("error: invalid configuration") && lines[0].contains(want),
            "{stderr}"
        );
        assert!(!home.path().join("state").exists());
    }
    let (ok, stderr, _) = run(&["up", "--config", "/nonexistent/payctl.toml"], &[]);
    assert!(
        !ok && stderr.contains("/nonexistent/payctl.toml"),
        "{stderr}"
    );
}

#[test]
fn missing_credentials_give_one_sentence() {
    let home = tempfile::tempdir().unwrap();
    let out = payctl_command(home.path())
        .env("AWS_REGION", "us-east-1")
        .env("PAYCTL_STATE_DIR", home.path().join("state"))
        .args(["up", "--env", "dev"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: no AWS credentials found"),
        "{stderr}"
    );
    assert!(!home.path().join("state").exists());
}

#[test]
fn outputs_without_state_says_to_run_up() {
    let (ok, stderr, _) = run(&["outputs", "--env", "dev"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("run `payctl up --env dev` first"),
        "{stderr}"
    );
}

#[test]
fn prod_down_without_yes_and_without_a_terminal_refuses_at_once() {
    let (ok, stderr, home) = run(&["down", "--env", "prod"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("refusing to delete environment prod without --yes"),
        "{stderr}"
    );
    assert!(!home.path().join("state").exists());
}

#[test]
fn the_local_api_refuses_a_production_env_before_it_starts_anything() {
    for (env, config) in [
        ("prod", None),
        ("live", Some("[env.live]\nproduction = true\n")),
    ] {
        let home = tempfile::tempdir().unwrap();
        let mut extra = Vec::new();
        let config_path = home.path().join("payctl.toml");
        if let Some(text) = config {
            std::fs::write(&config_path, text).unwrap();
            extra.push(("PAYCTL_CONFIG", config_path.to_str().unwrap()));
        }
        // A port that is free now: the refusal must come before anything listens on it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let started = std::time::Instant::now();
        let (ok, stderr, _) = run(
            &[
                "local",
                "start-api",
                "--env",
                env,
                "--port",
                &port,
                "--poll-event-sources",
            ],
            &extra,
        );
        assert!(!ok, "{env}: {stderr}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].contains(&format!("environment {env} is a production environment"))
                && lines[0].contains("never runs against it"),
            "{stderr}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap()))
            .expect("the port was left free");
    }
}

#[test]
fn production_may_not_be_set_under_defaults_nor_turned_off_for_prod() {
    for (env, text, want) in [
        (
            "dev",
            "[defaults]\nproduction = true\n",
            "[defaults] production is not allowed",
        ),
        (
            "prod",
            "[env.prod]\nproduction = false\n",
            "production = false is refused",
        ),
    ] {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("payctl.toml");
        std::fs::write(&path, text).unwrap();
        let (ok, stderr, home) = run(
            &["up", "--env", env, "--config", path.to_str().unwrap()],
            &[],
        );
        assert!(!ok);
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(want), "{stderr}");
        assert!(!home.path().join("state").exists());
    }
}

#[test]
fn every_command_has_help_with_examples() {
    let (ok, _, _) = run(&["--help"], &[]);
    assert!(ok);
    // Every subcommand clap knows, so a new one cannot ship without examples.
    let command = <payctl::cli::Cli as clap::CommandFactory>::command();
    let subs: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|n| n != "help")
        .collect();
    for want in [
        "up",
        "plan",
        "verify",
        "down",
        "outputs",
        "force-unlock",
        "completions",
    ] {
        assert!(
            subs.iter().any(|s| s == want),
            "{want} missing from {subs:?}"
        );
    }
    for sub in subs.iter().map(String::as_str) {
        let home = tempfile::tempdir().unwrap();
        let out = payctl_command(home.path())
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{sub} --help failed");
        assert!(
            help.contains("Example"),
            "{sub} --help has no examples:\n{help}"
        );
        assert!(help.contains(&format!("payctl {sub}")), "{sub}:\n{help}");
    }
}

#[test]
fn completions_are_generated_for_each_shell() {
    let script = |shell: &str| {
        let home = tempfile::tempdir().unwrap();
        let out = payctl_command(home.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, bash, _) = script("bash");
    assert!(status.success());
    for word in [
        "force-unlock",
        "--show-api-key",
        "--skip-final-snapshot",
        "--timings",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let (status, zsh, _) = script("zsh");
    assert!(
        status.success() && zsh.starts_with("#compdef payctl"),
        "{zsh}"
    );
    let (status, fish, _) = script("fish");
    assert!(
        status.success() && fish.contains("complete -c payctl"),
        "{fish}"
    );
    let (status, out, err) = script("tcsh");
    assert_eq!(status.code(), Some(2));
    assert!(
        out.is_empty() && err.contains("invalid value 'tcsh'"),
        "{err}"
    );
}
