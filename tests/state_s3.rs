//! The state kept in S3 (`--state s3://BUCKET/PREFIX`): a whole `up`/`down` with no
//! local file, two runs racing for the remote lock, a state object replaced during a
//! run, a stale remote lock, `state pull`/`push`, and buckets that are refused. Every
//! check reads the emulator back through the SDK.

mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use common::census::{assert_converged, assert_nothing_left, census};
use common::proxy::{Proxy, is_mutating};
use common::*;
use payctl::state::s3::S3Url;
use payctl::state::{Location, Record, State, StateStore};
use std::process::Child;
use std::time::{Duration, Instant};

const BUCKET: &str = "payctl-state-team";
const PREFIX: &str = "teams/payments";
const ACCOUNT: &str = "123456789012";

fn url() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

fn key(env: &str) -> String {
    format!("{PREFIX}/{env}.json")
}

fn lock_key(env: &str) -> String {
    format!("{PREFIX}/{env}.json.lock")
}

async fn s3(stack: &Stack) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::new(&stack.sdk().await)
}

/// Makes a state bucket: versioned or not, with SSE-KMS (a new key), SSE-S3 or none.
async fn make_bucket(stack: &Stack, name: &str, versioned: bool, encryption: Option<&str>) {
    let s3 = s3(stack).await;
    s3.create_bucket().bucket(name).send().await.unwrap();
    if versioned {
        let conf = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(conf)
            .send()
            .await
            .unwrap();
    }
    let Some(algorithm) = encryption else { return };
    let mut default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::from(algorithm));
    if algorithm == "aws:kms" {
        let key = stack.kms().await.create_key().send().await.unwrap();
        default = default.kms_master_key_id(key.key_metadata().unwrap().key_id());
    }
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default.build().unwrap())
        .build();
    let conf = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .unwrap();
    s3.put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(conf)
        .send()
        .await
        .unwrap();
}

/// An object's body and ETag, read back through the SDK.
async fn object(stack: &Stack, key: &str) -> Option<(Vec<u8>, String)> {
    match s3(stack)
        .await
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
    {
        Ok(out) => {
            let etag = out.e_tag().unwrap_or_default().to_string();
            let body = out.body.collect().await.unwrap().into_bytes().to_vec();
            Some((body, etag))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
        Err(e) => panic!("GetObject {key}: {e:?}"),
    }
}

async fn put(stack: &Stack, key: &str, body: Vec<u8>) {
    s3(stack)
        .await
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap();
}

async fn remote_state(stack: &Stack) -> State {
    let (body, _) = object(stack, &key(&stack.env))
        .await
        .expect("no remote state");
    State::parse(&body, "remote").unwrap()
}

/// Runs `payctl <args> --env <env>` with the harness's environment but no
/// `PAYCTL_STATE_DIR` (it would conflict with `--state`), against `endpoint`.
fn remote_run(stack: &Stack, endpoint: &str, args: &[&str]) -> Run {
    let mut cmd = stack.command();
    cmd.env_remove("PAYCTL_STATE_DIR")
        .env("AWS_ENDPOINT_URL", endpoint);
    Run::from(
        cmd.args(args)
            .args(["--env", &stack.env])
            .output()
            .expect("run payctl"),
    )
}

fn must(stack: &Stack, args: &[&str]) -> Run {
    let run = remote_run(stack, &stack.moto.endpoint, args);
    assert!(run.ok, "payctl {args:?} failed:\n{}", run.stderr);
    run
}

fn spawn(stack: &Stack, endpoint: &str, args: &[&str]) -> Child {
    let mut cmd = stack.command();
    cmd.env_remove("PAYCTL_STATE_DIR")
        .env("AWS_ENDPOINT_URL", endpoint)
        .args(args)
        .args(["--env", &stack.env])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("start payctl")
}

async fn finish(child: Child) -> Run {
    tokio::task::spawn_blocking(move || Run::from(child.wait_with_output().unwrap()))
        .await
        .unwrap()
}

async fn vpcs(stack: &Stack) -> usize {
    census(stack).await["vpc"].len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_down_keep_the_state_in_s3_only() {
    let stack = Stack::new("dev");
    make_bucket(&stack, BUCKET, true, Some("aws:kms")).await;
    let url = url();
    must(&stack, &["up", "--state", &url]);
    assert_converged(&stack).await;

    // No local state anywhere; the object holds the records, encrypted, versioned.
    assert!(!stack.home.path().join("state").exists());
    assert_eq!(
        std::fs::read_dir(stack.state_dir.path()).unwrap().count(),
        0
    );
    let state = remote_state(&stack).await;
    assert_eq!(
        (state.env.as_str(), state.account_id.as_str()),
        ("dev", ACCOUNT)
    );
    let vpc = state.resources.get("ec2_vpc.main").expect("vpc record");
    assert!(vpc.id.starts_with("vpc-"), "{vpc:?}");
    assert!(
        state.resources.len() > 40,
        "{} records",
        state.resources.len()
    );
    assert!(state.serial as usize >= state.resources.len());
    let head = s3(&stack)
        .await
        .head_object()
        .bucket(BUCKET)
        .key(key("dev"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    let versions = s3(&stack)
        .await
        .list_object_versions()
        .bucket(BUCKET)
        .prefix(key("dev"))
        .send()
        .await
        .unwrap();
    let of_state = versions
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key("dev").as_str()))
        .count();
    assert!(of_state > 1, "every write is a version: {of_state}");
    assert!(
        object(&stack, &lock_key("dev")).await.is_none(),
        "lock left"
    );

    // A second `up` works from the remote state: nothing new is made, the records stay.
    // (Its serial may grow: a converged `up` rewrites some records unchanged, locally too.)
    let run = must(&stack, &["up", "--state", &url]);
    assert!(run.stdout.contains("VPCId"), "{}", run.stdout);
    assert!(!run.stderr.contains(" created"), "{}", run.stderr);
    let again = remote_state(&stack).await;
    assert_eq!(
        (&again.lineage, &again.resources),
        (&state.lineage, &state.resources)
    );
    assert_converged(&stack).await;
    assert!(object(&stack, &lock_key("dev")).await.is_none());
    let out = must(&stack, &["outputs", "--json", "--state", &url]);
    assert!(out.stdout.contains(&vpc.id), "{}", out.stdout);
    // `plan` and `verify` read the remote state too (without its lock).
    let plan = remote_run(&stack, &stack.moto.endpoint, &["plan", "--state", &url]);
    assert_eq!(plan.code, Some(0), "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&format!("= ec2_vpc.main {}", vpc.id)),
        "{}",
        plan.stdout
    );
    must(&stack, &["verify", "--state", &url]);
    assert!(object(&stack, &lock_key("dev")).await.is_none());

    must(&stack, &["down", "--state", &url]);
    assert_nothing_left(&stack).await;
    // Only the KMS keys stay recorded (as with a local state file): the S3, SNS, logs and
    // Lambda keys pending deletion, the RDS key kept for the final snapshot, which is
    // recorded too.
    let left = remote_state(&stack).await.resources;
    let mut kinds: Vec<(&str, bool)> = left
        .iter()
        .map(|(addr, r)| {
            (
                addr.split('.').next().unwrap(),
                r.get("pending_deletion").is_some(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("kms_key", false),
            ("kms_key", true),
            ("kms_key", true),
            ("kms_key", true),
            ("kms_key", true),
            ("rds_snapshot", false)
        ],
        "{left:?}"
    );
    assert!(
        left["kms_key.rds"].get("pending_deletion").is_none(),
        "{left:?}"
    );
    assert!(!stack.home.path().join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_runs_racing_for_the_remote_lock_one_proceeds_and_the_loser_changes_nothing() {
    let stack = Stack::new("dev");
    make_bucket(&stack, BUCKET, true, Some("AES256")).await;
    // One proxy per run, so each run's requests are counted apart; the winner is held
    // inside its run (CreateVpc answered after 3 s) while the loser tries.
    let (a, b) = (
        Proxy::start(&stack.moto.endpoint).await,
        Proxy::start(&stack.moto.endpoint).await,
    );
    a.delay("CreateVpc", Duration::from_secs(3));
    b.delay("CreateVpc", Duration::from_secs(3));
    let url = url();
    let first = spawn(&stack, &a.endpoint, &["up", "--state", &url]);
    let second = spawn(&stack, &b.endpoint, &["up", "--state", &url]);
    let pids = [first.id(), second.id()];
    let runs = [finish(first).await, finish(second).await];
    let winners: Vec<usize> = (0..2).filter(|i| runs[*i].ok).collect();
    assert_eq!(
        winners.len(),
        1,
        "{}\n---\n{}",
        runs[0].stderr,
        runs[1].stderr
    );
    let (win, lose) = (winners[0], 1 - winners[0]);
    let err = runs[lose].error_line();
    assert!(
        err.contains(&format!("locked by pid {}", pids[win]))
            && err.contains(&format!("s3://{BUCKET}/{}", lock_key("dev"))),
        "{err}"
    );
    // The loser's only change was its refused attempt at the lock.
    let lock_put = format!("PUT /{BUCKET}/{}", lock_key("dev"));
    let loser = [&a, &b][lose].counts();
    let changes: Vec<&String> = loser.keys().filter(|op| is_mutating(op)).collect();
    assert!(
        changes.iter().all(|op| op.starts_with(&lock_put)) && !changes.is_empty(),
        "{changes:?}"
    );
    assert!(
        !loser.keys().any(|op| op.contains("CreateVpc")),
        "{loser:?}"
    );
    assert_converged(&stack).await;
    assert!(
        object(&stack, &lock_key("dev")).await.is_none(),
        "lock left"
    );
    assert!(!remote_state(&stack).await.resources.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_replaced_during_a_run_is_not_overwritten_and_the_run_stops() {
    // Without a remote state at the start (the run's first write is `If-None-Match: *`)
    // and with one (every write is `If-Match: <ETag>`).
    for seeded in [false, true] {
        replaced_during_a_run(seeded).await;
    }
}

async fn replaced_during_a_run(seeded: bool) {
    let stack = Stack::new("dev");
    make_bucket(&stack, BUCKET, true, Some("AES256")).await;
    let seed = State::new("dev", REGION, ACCOUNT);
    if seeded {
        put(
            &stack,
            &key("dev"),
            serde_json::to_vec_pretty(&seed).unwrap(),
        )
        .await;
    }
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    proxy.delay("CreateVpc", Duration::from_secs(3));
    let child = spawn(&stack, &proxy.endpoint, &["up", "--state", &url()]);
    let asked = Instant::now();
    while proxy.count("CreateVpc").0 == 0 {
        assert!(asked.elapsed() < Duration::from_secs(60), "no CreateVpc");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Another writer replaces the state object while the VPC is being made.
    let mut intruder = seed.clone();
    intruder.serial = 1000;
    let intruder = serde_json::to_vec_pretty(&intruder).unwrap();
    put(&stack, &key("dev"), intruder.clone()).await;

    let run = finish(child).await;
    assert!(!run.ok, "seeded {seeded}: the run went on after a conflict");
    let err = run.error_line();
    assert!(err.contains("changed under this run"), "{}", run.stderr);
    assert!(err.contains("this run still holds the lock"), "{err}");
    assert_eq!(
        object(&stack, &key("dev")).await.unwrap().0,
        intruder,
        "seeded {seeded}: the other writer's state was overwritten"
    );
    let recovery = err
        .split("saved to ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or_else(|| panic!("no recovery file in {err}"));
    // No local state directory here (`state` under HOME does not exist): the per-user one.
    assert!(
        recovery.starts_with(
            &*stack
                .home
                .path()
                .join(".local/state/payctl")
                .to_string_lossy()
        ),
        "{err}"
    );
    let saved = State::load(std::path::Path::new(recovery))
        .unwrap()
        .unwrap();
    let vpc = saved
        .resources
        .get("ec2_vpc.main")
        .expect("vpc in recovery");
    assert_eq!(census(&stack).await["vpc"], vec![vpc.id.clone()]);
    std::fs::remove_file(recovery).unwrap();
    assert!(
        object(&stack, &lock_key("dev")).await.is_none(),
        "lock left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_remote_lock_names_force_unlock_which_clears_it() {
    let stack = Stack::new("dev");
    make_bucket(&stack, BUCKET, true, Some("AES256")).await;
    // A pid that cannot exist on Linux, on this host.
    let dead = serde_json::json!({
        "id": "abc-123", "pid": 4_194_305u32, "host": gethostname::gethostname().to_string_lossy(),
        "started_at": "2026-01-01T00:00:00Z", "command": "up"
    });
    put(&stack, &lock_key("dev"), serde_json::to_vec(&dead).unwrap()).await;
    let url = url();
    let run = remote_run(&stack, &stack.moto.endpoint, &["up", "--state", &url]);
    let err = run.error_line();
    let unlock = format!("payctl force-unlock --env dev --state {url} abc-123");
    assert!(
        !run.ok && err.contains("stale lock") && err.contains(&unlock),
        "{err}"
    );
    assert_eq!(vpcs(&stack).await, 0);

    let run = remote_run(
        &stack,
        &stack.moto.endpoint,
        &["force-unlock", "--state", &url, "wrong"],
    );
    assert!(
        !run.ok && run.error_line().contains("nothing was removed"),
        "{}",
        run.stderr
    );
    assert!(object(&stack, &lock_key("dev")).await.is_some());

    let args: Vec<&str> = unlock.split_whitespace().skip(1).collect();
    let out = stack
        .command()
        .env_remove("PAYCTL_STATE_DIR")
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(object(&stack, &lock_key("dev")).await.is_none());

    // A lock held by a live process is not stale: its holder is named.
    let live = serde_json::json!({
        "id": "live-1", "pid": std::process::id(), "host": gethostname::gethostname().to_string_lossy(),
        "started_at": "2026-01-01T00:00:00Z", "command": "up"
    });
    put(&stack, &lock_key("dev"), serde_json::to_vec(&live).unwrap()).await;
    let run = remote_run(&stack, &stack.moto.endpoint, &["down", "--state", &url]);
    let err = run.error_line();
    assert!(
        err.contains(&format!("locked by pid {}", std::process::id())),
        "{err}"
    );
    assert!(object(&stack, &lock_key("dev")).await.is_some());
}

fn local_state(serial: u64, lineage: Option<&str>) -> State {
    let mut s = State::new("dev", REGION, ACCOUNT);
    s.serial = serial;
    if let Some(l) = lineage {
        s.lineage = l.to_string();
    }
    s.resources.insert(
        "ec2_vpc.main".into(),
        Record::new("ec2_vpc", format!("vpc-{serial}")),
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_push_copy_the_state_and_refuse_to_lose_a_newer_one() {
    let stack = Stack::new("dev");
    make_bucket(&stack, BUCKET, true, Some("AES256")).await;
    let url = url();
    let file = stack.state_file();
    let write_local = |s: &State| std::fs::write(&file, serde_json::to_vec_pretty(s).unwrap());

    // No S3 location: refused.
    let run = stack.payctl(&["state", "pull"]);
    assert!(
        !run.ok && run.error_line().contains("needs an S3 location"),
        "{}",
        run.stderr
    );

    // push: a new remote object, one serial above the local one; both sides identical.
    let ours = local_state(3, None);
    write_local(&ours).unwrap();
    stack.must(&["state", "push", "--state", &url]);
    let remote = remote_state(&stack).await;
    assert_eq!(
        (remote.lineage.as_str(), remote.serial),
        (ours.lineage.as_str(), 4)
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        object(&stack, &key("dev")).await.unwrap().0
    );
    assert!(
        object(&stack, &lock_key("dev")).await.is_none(),
        "lock left"
    );
    stack.must(&["state", "pull", "--state", &url]);

    // The remote moved on (serial 9): push is refused, pull takes it.
    let newer = local_state(9, Some(&ours.lineage));
    put(
        &stack,
        &key("dev"),
        serde_json::to_vec_pretty(&newer).unwrap(),
    )
    .await;
    let (before, _) = object(&stack, &key("dev")).await.unwrap();
    let run = stack.payctl(&["state", "push", "--state", &url]);
    assert!(!run.ok, "push overwrote a newer remote state");
    assert!(
        run.error_line().contains("is newer (serial 9 > 4)"),
        "{}",
        run.stderr
    );
    assert_eq!(object(&stack, &key("dev")).await.unwrap().0, before);
    stack.must(&["state", "pull", "--state", &url]);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let backup = State::load(&file.with_extension("json.backup"))
        .unwrap()
        .unwrap();
    assert_eq!(backup.serial, 4);

    // A local file of another history: pull refuses, then --force takes the remote one.
    let other = local_state(2, Some("another-lineage"));
    write_local(&other).unwrap();
    let run = stack.payctl(&["state", "pull", "--state", &url]);
    assert!(
        !run.ok && run.error_line().contains("two different histories"),
        "{}",
        run.stderr
    );
    assert_eq!(State::load(&file).unwrap().unwrap(), other);
    // ... and push refuses to replace the remote one with it.
    let run = stack.payctl(&["state", "push", "--state", &url]);
    assert!(
        !run.ok && run.error_line().contains("two different histories"),
        "{}",
        run.stderr
    );
    assert_eq!(object(&stack, &key("dev")).await.unwrap().0, before);
    stack.must(&["state", "pull", "--state", &url, "--force"]);
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // A newer local file (serial 20) is pushed; then --force replaces another history.
    write_local(&local_state(20, Some(&ours.lineage))).unwrap();
    let run = stack.payctl(&["state", "pull", "--state", &url]);
    assert!(
        !run.ok && run.error_line().contains("local state is newer"),
        "{}",
        run.stderr
    );
    stack.must(&["state", "push", "--state", &url]);
    assert_eq!(remote_state(&stack).await.serial, 21);
    write_local(&other).unwrap();
    stack.must(&["state", "push", "--state", &url, "--force"]);
    let remote = remote_state(&stack).await;
    assert_eq!(
        (remote.lineage.as_str(), remote.serial),
        ("another-lineage", 22)
    );

    // A detached store (what a read-only command uses) reads it without the lock, and
    // its changes stay in memory.
    let location = Location::S3(S3Url::parse(&url).unwrap());
    let sdk = stack.sdk().await;
    let (before, _) = object(&stack, &key("dev")).await.unwrap();
    let plan = StateStore::open_detached_at(&location, &sdk, "dev", REGION, ACCOUNT)
        .await
        .unwrap();
    assert!(plan.is_detached());
    assert_eq!(plan.snapshot().lineage, "another-lineage");
    plan.put("ec2_subnet.a", Record::new("ec2_subnet", "subnet-1"))
        .await
        .unwrap();
    plan.remove("ec2_vpc.main").await.unwrap();
    assert_eq!(plan.id("ec2_subnet.a").as_deref(), Some("subnet-1"));
    drop(plan);
    assert_eq!(object(&stack, &key("dev")).await.unwrap().0, before);
    assert!(object(&stack, &lock_key("dev")).await.is_none());

    // Nothing to pull for an environment without remote state.
    let run = Run::from(
        stack
            .command()
            .args(["state", "pull", "--env", "qa", "--state", &url])
            .output()
            .unwrap(),
    );
    assert!(
        !run.ok && run.error_line().contains("there is no state at"),
        "{}",
        run.stderr
    );
    assert!(!stack.state_dir.path().join("qa.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_without_versioning_or_encryption_and_bad_urls_are_refused() {
    let stack = Stack::new("dev");
    make_bucket(&stack, "unversioned-state", false, Some("AES256")).await;
    make_bucket(&stack, "unencrypted-state", true, None).await;
    let proxy = Proxy::start(&stack.moto.endpoint).await;
    for (url, want) in [
        (
            "s3://unversioned-state/p",
            "state bucket unversioned-state is not versioned",
        ),
        (
            "s3://unencrypted-state/p",
            "state bucket unencrypted-state has no default encryption",
        ),
        (
            "s3://missing-state/p",
            "state bucket missing-state does not exist",
        ),
    ] {
        let run = remote_run(&stack, &proxy.endpoint, &["up", "--state", url]);
        assert!(!run.ok, "{url} accepted");
        assert!(run.error_line().contains(want), "{url}: {}", run.stderr);
    }
    let s3 = s3(&stack).await;
    for bucket in ["unversioned-state", "unencrypted-state"] {
        let listed = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        assert!(listed.contents().is_empty(), "{bucket}: {listed:?}");
    }
    assert_eq!(vpcs(&stack).await, 0);
    let changes: Vec<String> = proxy
        .counts()
        .into_keys()
        .filter(|op| is_mutating(op) && !op.contains("unversioned-state/p/dev.json.lock"))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");

    // A bad URL, on the command line or in payctl.toml: one line, no request at all.
    let before: usize = proxy.counts().values().sum();
    let config = stack.home.path().join("payctl.toml");
    for (args, want) in [
        (
            vec!["up", "--state", "s3://Team_State/x"],
            "invalid state location \"s3://Team_State/x\"",
        ),
        (
            vec!["down", "--state", "team-state/x"],
            "does not start with s3://",
        ),
        (
            vec!["up"],
            "[env.dev] state: invalid state location \"s3://ab\"",
        ),
    ] {
        if args == ["up"] {
            std::fs::write(&config, "[env.dev]\nstate = \"s3://ab\"\n").unwrap();
        }
        let run = remote_run(&stack, &proxy.endpoint, &args);
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            !run.ok && lines.len() == 1 && lines[0].contains(want),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(proxy.counts().values().sum::<usize>(), before);
    assert!(!stack.home.path().join("state").exists());
}

#[test]
fn the_state_commands_have_help_with_examples() {
    let home = tempfile::tempdir().unwrap();
    for sub in [&["state"][..], &["state", "pull"], &["state", "push"]] {
        let out = payctl_command(home.path())
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains("Examples"),
            "{sub:?}:\n{help}"
        );
        assert!(help.contains("payctl state"), "{sub:?}:\n{help}");
    }
    // --state and an explicit --state-dir name two places for the state.
    let out = payctl_command(home.path())
        .args(["up", "--state", "s3://team-state", "--state-dir", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
