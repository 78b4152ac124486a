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

/// A state of environment `env` in us-east-1 whose VPC record has id `vpc`.
fn state_with_vpc(env: &str, vpc: &str) -> Vec<u8> {
    let mut state = payctl::state::State::new(env, common::REGION, "123456789012");
    state.resources.insert(
        "ec2_vpc.main".into(),
        payctl::state::Record::new("ec2_vpc", vpc),
    );
    serde_json::to_vec_pretty(&state).unwrap()
}

/// The `VPCId` that `payctl outputs --json` printed.
fn vpc_of(run: &common::Run) -> String {
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let outputs: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    outputs["VPCId"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn the_state_flag_beats_payctl_state_dir_which_still_works_alone() {
    let stack = common::Stack::new("dev");
    // A local state (in PAYCTL_STATE_DIR, which the harness sets) and an S3 state.
    std::fs::write(stack.state_file(), state_with_vpc("dev", "vpc-local")).unwrap();
    let s3 = aws_sdk_s3::Client::new(&stack.sdk().await);
    s3.create_bucket()
        .bucket("team-state")
        .send()
        .await
        .unwrap();
    s3.put_object()
        .bucket("team-state")
        .key("dev.json")
        .body(state_with_vpc("dev", "vpc-remote").into())
        .send()
        .await
        .unwrap();
    let outputs = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = stack.command();
        for (k, v) in env {
            cmd.env(k, v);
        }
        common::Run::from(
            cmd.args(["outputs", "--json", "--env", "dev"])
                .args(args)
                .output()
                .unwrap(),
        )
    };

    // Without a flag, the environment variable names the directory.
    assert_eq!(vpc_of(&outputs(&[], &[])), "vpc-local");
    // The flag wins over PAYCTL_STATE_DIR (no usage error).
    let run = outputs(&["--state", "s3://team-state"], &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(vpc_of(&run), "vpc-remote");
    // PAYCTL_STATE in the environment does not conflict with --state-dir on the command
    // line: the S3 location names where the state is, the directory where a recovery
    // file would go.
    let dir = stack.state_dir.path().to_str().unwrap();
    let run = outputs(
        &["--state-dir", dir],
        &[("PAYCTL_STATE", "s3://team-state")],
    );
    assert_eq!(vpc_of(&run), "vpc-remote");
    // Both on the command line name two places: a usage error, as before.
    let run = outputs(&["--state", "s3://team-state", "--state-dir", dir], &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

#[test]
fn payctl_env_names_the_environment_before_environment_suffix_and_after_the_flag() {
    let env_of = |args: &[&str], vars: &[(&str, &str)]| {
        let mut all = vec!["outputs"];
        all.extend_from_slice(args);
        let (ok, stderr, _) = run(&all, vars);
        assert!(!ok, "no state anywhere: {stderr}");
        let start = stderr
            .find("no state for environment ")
            .unwrap_or_else(|| panic!("{stderr}"));
        stderr[start..]
            .split_whitespace()
            .nth(4)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(env_of(&[], &[]), "dev");
    assert_eq!(env_of(&[], &[("PAYCTL_ENV", "qa")]), "qa");
    assert_eq!(env_of(&[], &[("ENVIRONMENT_SUFFIX", "staging")]), "staging");
    // The more specific PAYCTL_ENV wins over ENVIRONMENT_SUFFIX; --env over both.
    let both = [("PAYCTL_ENV", "qa"), ("ENVIRONMENT_SUFFIX", "staging")];
    assert_eq!(env_of(&[], &both), "qa");
    assert_eq!(env_of(&["--env", "perf"], &both), "perf");
    // Checked like the flag.
    let (ok, stderr, _) = run(&["up"], &[("PAYCTL_ENV", "Bad_Env")]);
    assert!(
        !ok && stderr.contains("invalid environment name \"Bad_Env\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_profile_flag_selects_the_profile_and_beats_aws_profile() {
    let stack = common::Stack::new("dev");
    // Two profiles, each with credentials and its own region; none in the environment.
    let config = stack.home.path().join("aws-config");
    std::fs::write(
        &config,
        "[profile ci]\nregion = eu-west-3\naws_access_key_id = testing\naws_secret_access_key = testing\n\n\
         [profile other]\nregion = us-west-2\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    // The state belongs to us-east-1: a run in another region names the one it got.
    std::fs::write(stack.state_file(), state_with_vpc("dev", "vpc-1")).unwrap();
    let plan = |args: &[&str], profile: Option<&str>| {
        let mut cmd = stack.command();
        cmd.env("AWS_CONFIG_FILE", &config)
            .env_remove("AWS_REGION")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
        if let Some(p) = profile {
            cmd.env("AWS_PROFILE", p);
        }
        common::Run::from(
            cmd.args(["plan", "--env", "dev"])
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let region_in = |run: &common::Run| {
        assert!(!run.ok, "{}", run.stderr);
        let line = run.error_line();
        assert!(line.contains("belongs to region \"us-east-1\""), "{line}");
        line
    };
    // No profile anywhere: no credentials at all.
    let run = plan(&[], None);
    assert!(
        run.error_line()
            .starts_with("error: no AWS credentials found"),
        "{}",
        run.stderr
    );
    // AWS_PROFILE alone still works; --profile alone selects its profile's credentials
    // and region; and --profile beats AWS_PROFILE.
    assert!(region_in(&plan(&[], Some("other"))).contains("not \"us-west-2\""));
    assert!(region_in(&plan(&["--profile", "ci"], None)).contains("not \"eu-west-3\""));
    assert!(region_in(&plan(&["--profile", "ci"], Some("other"))).contains("not \"eu-west-3\""));
}
