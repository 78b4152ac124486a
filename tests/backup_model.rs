//! The emulator's front plays the AWS Backup plans, selections and recovery points that
//! moto 5.2.5 lacks or gets wrong (tests/common/backup.rs): this drives it through the
//! real `aws-sdk-backup` client, so every answer is one the SDK parses, and checks AWS's
//! rules the model keeps (a plan with selections and a vault with recovery points are
//! not deleted; a deleted plan's document can be used again). Vaults stay moto's.

mod common;

use aws_sdk_backup::error::ProvideErrorMetadata;
use aws_sdk_backup::types::{BackupPlanInput, BackupRuleInput, BackupSelection, Lifecycle};
use common::*;
use std::collections::HashMap;

const VAULT: &str = "payment-backup-model";
const PLAN: &str = "payment-backup-plan-model";
const ROLE: &str = "arn:aws:iam::123456789012:role/payment-backup-model";
const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/payment-transactions-model";

fn plan_input(schedule: &str) -> BackupPlanInput {
    let rule = BackupRuleInput::builder()
        .rule_name("daily-35-days")
        .target_backup_vault_name(VAULT)
        .schedule_expression(schedule)
        .start_window_minutes(60)
        .completion_window_minutes(360)
        .lifecycle(Lifecycle::builder().delete_after_days(35).build())
        .build()
        .unwrap();
    BackupPlanInput::builder()
        .backup_plan_name(PLAN)
        .rules(rule)
        .build()
        .unwrap()
}

fn tags() -> HashMap<String, String> {
    HashMap::from([
        ("Project".to_string(), "payment-processing".to_string()),
        ("Environment".to_string(), "model".to_string()),
    ])
}

/// The error code of a failed call (`None` when it succeeded or had no code).
fn code<T, E: ProvideErrorMetadata, R>(
    out: &Result<T, aws_sdk_backup::error::SdkError<E, R>>,
) -> Option<String> {
    out.as_ref()
        .err()?
        .as_service_error()?
        .code()
        .map(str::to_string)
}

#[tokio::test]
async fn backup_plans_selections_and_recovery_points_round_trip_through_the_sdk() {
    let stack = Stack::new("model");
    let backup = aws_sdk_backup::Client::new(&stack.sdk().await);
    let model = stack.moto.backup();

    // The vault is moto's: the model does not answer for it.
    backup
        .create_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await
        .unwrap();
    let vault = backup
        .describe_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await
        .unwrap();
    assert_eq!(vault.backup_vault_name(), Some(VAULT));
    let vaults = backup.list_backup_vaults().send().await.unwrap();
    let names: Vec<_> = vaults
        .backup_vault_list()
        .iter()
        .map(|v| v.backup_vault_name())
        .collect();
    assert_eq!(names, [Some(VAULT)]);
    assert!(
        model.lock().unwrap().handled().is_empty(),
        "the model answered a vault request: {:?}",
        model.lock().unwrap().handled()
    );

    // A plan, with tags.
    let created = backup
        .create_backup_plan()
        .backup_plan(plan_input("cron(0 3 ? * * *)"))
        .set_backup_plan_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    let first = created.backup_plan_id().unwrap().to_string();
    let first_arn = created.backup_plan_arn().unwrap().to_string();
    assert_eq!(
        first_arn,
        format!("arn:aws:backup:{REGION}:123456789012:backup-plan:{first}")
    );
    assert!(created.version_id().is_some_and(|v| !v.is_empty()));
    assert!(created.creation_date().is_some());
    assert_eq!(model.lock().unwrap().handled(), ["CreateBackupPlan"]);

    let listed = backup.list_backup_plans().send().await.unwrap();
    let names: Vec<(Option<&str>, Option<&str>)> = listed
        .backup_plans_list()
        .iter()
        .map(|p| (p.backup_plan_id(), p.backup_plan_name()))
        .collect();
    assert_eq!(names, [(Some(first.as_str()), Some(PLAN))]);

    let got = backup
        .get_backup_plan()
        .backup_plan_id(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(got.backup_plan_arn(), Some(first_arn.as_str()));
    assert_eq!(got.version_id(), created.version_id());
    assert!(got.deletion_date().is_none());
    let plan = got.backup_plan().unwrap();
    assert_eq!(plan.backup_plan_name(), PLAN);
    let [rule] = plan.rules() else {
        panic!("one rule: {:?}", plan.rules());
    };
    assert_eq!(rule.rule_name(), "daily-35-days");
    assert_eq!(rule.target_backup_vault_name(), VAULT);
    assert_eq!(rule.schedule_expression(), Some("cron(0 3 ? * * *)"));
    assert_eq!(rule.start_window_minutes(), Some(60));
    assert_eq!(rule.completion_window_minutes(), Some(360));
    assert_eq!(
        rule.lifecycle().and_then(|l| l.delete_after_days()),
        Some(35)
    );
    // AWS's default where the rule says nothing.
    assert_eq!(rule.schedule_expression_timezone(), Some("Etc/UTC"));
    assert!(rule.rule_id().is_some_and(|id| !id.is_empty()));

    let missing = backup
        .get_backup_plan()
        .backup_plan_id("no-such-plan")
        .send()
        .await;
    assert_eq!(code(&missing).as_deref(), Some("ResourceNotFoundException"));

    // A selection of the plan.
    let selection = BackupSelection::builder()
        .selection_name("payment-tables")
        .iam_role_arn(ROLE)
        .resources(TABLE)
        .build()
        .unwrap();
    let made = backup
        .create_backup_selection()
        .backup_plan_id(&first)
        .backup_selection(selection)
        .send()
        .await
        .unwrap();
    let selection_id = made.selection_id().unwrap().to_string();
    assert_eq!(made.backup_plan_id(), Some(first.as_str()));
    assert!(made.creation_date().is_some());

    let selections = backup
        .list_backup_selections()
        .backup_plan_id(&first)
        .send()
        .await
        .unwrap();
    let [listed] = selections.backup_selections_list() else {
        panic!("one selection: {selections:?}");
    };
    assert_eq!(listed.selection_id(), Some(selection_id.as_str()));
    assert_eq!(listed.selection_name(), Some("payment-tables"));
    assert_eq!(listed.backup_plan_id(), Some(first.as_str()));
    assert_eq!(listed.iam_role_arn(), Some(ROLE));
    assert!(listed.creation_date().is_some());

    let got = backup
        .get_backup_selection()
        .backup_plan_id(&first)
        .selection_id(&selection_id)
        .send()
        .await
        .unwrap();
    assert_eq!(got.selection_id(), Some(selection_id.as_str()));
    let document = got.backup_selection().unwrap();
    assert_eq!(document.selection_name(), "payment-tables");
    assert_eq!(document.iam_role_arn(), ROLE);
    assert_eq!(document.resources(), [TABLE]);

    // A plan with a selection is not deleted.
    let refused = backup
        .delete_backup_plan()
        .backup_plan_id(&first)
        .send()
        .await;
    assert_eq!(code(&refused).as_deref(), Some("InvalidRequestException"));
    assert!(
        model
            .lock()
            .unwrap()
            .plan(&first)
            .is_some_and(|p| !p.is_deleted())
    );

    backup
        .delete_backup_selection()
        .backup_plan_id(&first)
        .selection_id(&selection_id)
        .send()
        .await
        .unwrap();
    let selections = backup
        .list_backup_selections()
        .backup_plan_id(&first)
        .send()
        .await
        .unwrap();
    assert!(
        selections.backup_selections_list().is_empty(),
        "{selections:?}"
    );
    assert!(model.lock().unwrap().selections(&first).is_empty());

    let deleted = backup
        .delete_backup_plan()
        .backup_plan_id(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.backup_plan_id(), Some(first.as_str()));
    assert_eq!(deleted.backup_plan_arn(), Some(first_arn.as_str()));
    assert_eq!(deleted.version_id(), created.version_id());
    assert!(deleted.deletion_date().is_some());

    // A deleted plan is still read, with its deletion date, but no longer listed.
    let got = backup
        .get_backup_plan()
        .backup_plan_id(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(got.deletion_date(), deleted.deletion_date());
    let listed = backup.list_backup_plans().send().await.unwrap();
    assert!(listed.backup_plans_list().is_empty(), "{listed:?}");
    let with_deleted = backup
        .list_backup_plans()
        .include_deleted(true)
        .send()
        .await
        .unwrap();
    let [old] = with_deleted.backup_plans_list() else {
        panic!("the deleted plan: {with_deleted:?}");
    };
    assert_eq!(old.backup_plan_id(), Some(first.as_str()));
    assert!(old.deletion_date().is_some());

    // The same plan again (as `up` after `down` makes it): a new plan.
    let again = backup
        .create_backup_plan()
        .backup_plan(plan_input("cron(0 3 ? * * *)"))
        .set_backup_plan_tags(Some(tags()))
        .send()
        .await
        .unwrap();
    let second = again.backup_plan_id().unwrap().to_string();
    let second_arn = again.backup_plan_arn().unwrap().to_string();
    assert_ne!(second, first);
    // ... but not twice while the first of them lives.
    let twice = backup
        .create_backup_plan()
        .backup_plan(plan_input("cron(0 3 ? * * *)"))
        .send()
        .await;
    assert_eq!(code(&twice).as_deref(), Some("AlreadyExistsException"));
    assert_eq!(model.lock().unwrap().live_plans_named(PLAN).len(), 1);

    // An update makes a new version.
    let updated = backup
        .update_backup_plan()
        .backup_plan_id(&second)
        .backup_plan(plan_input("cron(0 4 ? * * *)"))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.backup_plan_id(), Some(second.as_str()));
    assert!(updated.version_id().is_some());
    assert_ne!(updated.version_id(), again.version_id());
    let got = backup
        .get_backup_plan()
        .backup_plan_id(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(got.version_id(), updated.version_id());
    let rules = got.backup_plan().unwrap().rules();
    assert_eq!(rules[0].schedule_expression(), Some("cron(0 4 ? * * *)"));
    // The first version is still there by its id.
    let first_version = backup
        .get_backup_plan()
        .backup_plan_id(&second)
        .version_id(again.version_id().unwrap())
        .send()
        .await
        .unwrap();
    let rules = first_version.backup_plan().unwrap().rules();
    assert_eq!(rules[0].schedule_expression(), Some("cron(0 3 ? * * *)"));

    // A recovery point in the vault.
    let point = stack.moto.add_recovery_point(VAULT, TABLE, "DynamoDB");
    let points = backup
        .list_recovery_points_by_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await
        .unwrap();
    let [listed] = points.recovery_points() else {
        panic!("one recovery point: {points:?}");
    };
    assert_eq!(listed.recovery_point_arn(), Some(point.as_str()));
    assert_eq!(listed.backup_vault_name(), Some(VAULT));
    assert_eq!(listed.backup_vault_arn(), vault.backup_vault_arn());
    assert_eq!(listed.resource_arn(), Some(TABLE));
    assert_eq!(listed.resource_type(), Some("DynamoDB"));
    assert_eq!(
        listed.status(),
        Some(&aws_sdk_backup::types::RecoveryPointStatus::Completed)
    );
    assert!(listed.creation_date().is_some());
    let unknown = backup
        .list_recovery_points_by_backup_vault()
        .backup_vault_name("no-such-vault")
        .send()
        .await;
    assert_eq!(code(&unknown).as_deref(), Some("ResourceNotFoundException"));

    // A vault with a recovery point is not deleted.
    let refused = backup
        .delete_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await;
    assert_eq!(code(&refused).as_deref(), Some("InvalidRequestException"));
    backup
        .describe_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await
        .expect("the vault is still there");

    // The plan's tags, as created, then changed.
    let listed = backup
        .list_tags()
        .resource_arn(&second_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags(), Some(&tags()));
    backup
        .tag_resource()
        .resource_arn(&second_arn)
        .tags("Team", "platform-engineering")
        .send()
        .await
        .unwrap();
    backup
        .untag_resource()
        .resource_arn(&second_arn)
        .tag_key_list("Environment")
        .send()
        .await
        .unwrap();
    let listed = backup
        .list_tags()
        .resource_arn(&second_arn)
        .send()
        .await
        .unwrap();
    let want = HashMap::from([
        ("Project".to_string(), "payment-processing".to_string()),
        ("Team".to_string(), "platform-engineering".to_string()),
    ]);
    assert_eq!(listed.tags(), Some(&want));

    // The vault's tags stay moto's.
    backup
        .tag_resource()
        .resource_arn(vault.backup_vault_arn().unwrap())
        .tags("Owner", "moto")
        .send()
        .await
        .unwrap();
    let vault_tags = backup
        .list_tags()
        .resource_arn(vault.backup_vault_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        vault_tags
            .tags()
            .and_then(|t| t.get("Owner"))
            .map(String::as_str),
        Some("moto")
    );
    // The plan's TagResource was the model's; the vault's was not.
    let handled = model.lock().unwrap().handled();
    let tagged = handled.iter().filter(|h| *h == "TagResource").count();
    assert_eq!(tagged, 1, "{handled:?}");

    // Emptied, the vault goes (moto deletes it).
    assert!(model.lock().unwrap().remove_recovery_point(&point));
    backup
        .delete_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await
        .unwrap();
    let gone = backup
        .describe_backup_vault()
        .backup_vault_name(VAULT)
        .send()
        .await;
    assert_eq!(code(&gone).as_deref(), Some("ResourceNotFoundException"));
}
