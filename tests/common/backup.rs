//! A model of the AWS Backup API parts moto 5.2.5 lacks or gets wrong, played by the
//! emulator's front ([`super::Moto`]) in front of moto (test support only).
//!
//! moto implements backup vaults, but:
//! - it has no backup selections: its URL pattern `/backup/plans/(?P<name>.+)/?$`
//!   swallows `/backup/plans/{id}/selections...` and answers HTTP 500 (HTML);
//! - it has no recovery points (ListRecoveryPointsByBackupVault answers 404 HTML), and
//!   DeleteBackupVault deletes a vault that AWS would refuse to delete;
//! - UpdateBackupPlan answers 500;
//! - DeleteBackupPlan only stamps a DeletionDate, after which CreateBackupPlan refuses the
//!   same plan forever, while AWS lets it be made again once the old plan is deleted.
//!
//! So the model answers, in AWS Backup's REST-JSON protocol as `aws-sdk-backup` reads it
//! (epoch-second timestamps as JSON numbers, errors named by `x-amzn-errortype`), the
//! backup **plans** (with versions, tags and deletion date), their **selections**, and
//! the **recovery points** of each vault; vaults and every other request go to moto
//! ([`Route::Moto`]). Tests read the model back ([`Backup::plans`],
//! [`Backup::selections`], [`Backup::recovery_points`]) and put recovery points into a
//! vault ([`Backup::add_recovery_point`]), which nothing else can make locally.
//!
//! The API reference: https://docs.aws.amazon.com/aws-backup/latest/devguide/API_Operations_AWS_Backup.html

use payctl::local::http::{Request, Response};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// moto's account (the one every request with the test credentials acts in).
pub const ACCOUNT: &str = "123456789012";

/// Defaults AWS applies to a rule that leaves them out (API_BackupRuleInput.html):
/// a start window of 8 hours, a completion window of 7 days, and schedules in UTC.
pub const DEFAULT_START_WINDOW_MINUTES: i64 = 480;
pub const DEFAULT_COMPLETION_WINDOW_MINUTES: i64 = 10080;
pub const DEFAULT_TIMEZONE: &str = "Etc/UTC";

/// One version of a plan: the plan document as AWS returns it (`BackupPlan`: name,
/// rules with their `RuleId` and defaults, and any other member as sent).
#[derive(Clone, Debug)]
pub struct PlanVersion {
    pub version_id: String,
    /// Epoch seconds, with milliseconds.
    pub created: f64,
    pub document: Value,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub id: String,
    pub arn: String,
    pub region: String,
    /// Oldest first; the last is the current version.
    pub versions: Vec<PlanVersion>,
    pub tags: BTreeMap<String, String>,
    pub creator_request_id: Option<String>,
    pub deletion_date: Option<f64>,
}

impl Plan {
    pub fn current(&self) -> &PlanVersion {
        self.versions.last().expect("a plan has a version")
    }

    pub fn name(&self) -> String {
        str_of(&self.current().document, "BackupPlanName").unwrap_or_default()
    }

    pub fn version_id(&self) -> String {
        self.current().version_id.clone()
    }

    /// The current version's rules, as `GetBackupPlan` returns them.
    pub fn rules(&self) -> Vec<Value> {
        self.current().document["Rules"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn is_deleted(&self) -> bool {
        self.deletion_date.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct Selection {
    pub id: String,
    pub plan_id: String,
    pub name: String,
    pub iam_role_arn: String,
    pub created: f64,
    pub creator_request_id: Option<String>,
    /// The `BackupSelection` as sent (`Resources`, `ListOfTags`, `Conditions`, ...).
    pub document: Value,
}

#[derive(Clone, Debug)]
pub struct RecoveryPoint {
    pub arn: String,
    pub region: String,
    pub vault_name: String,
    pub vault_arn: String,
    pub resource_arn: String,
    pub resource_type: String,
    pub created: f64,
    pub tags: BTreeMap<String, String>,
}

/// What the front does with a request (see [`answer`]).
#[derive(Debug)]
pub enum Route {
    /// The model's answer.
    Answer(Response),
    /// Not the model's: moto answers it, as it came.
    Moto,
    /// moto's, at this target: the path as botocore writes it (see [`moto_path`]).
    MotoAt { target: String },
    /// ListRecoveryPointsByBackupVault of this vault (the raw path segment): answered by
    /// the model once moto confirms the vault exists.
    RecoveryPoints { vault: String },
}

/// The model: AWS Backup plans, selections and recovery points, per region.
pub struct Backup {
    region: String,
    account: String,
    plans: Vec<Plan>,
    selections: Vec<Selection>,
    recovery_points: Vec<RecoveryPoint>,
    handled: Vec<String>,
}

impl Default for Backup {
    fn default() -> Self {
        Backup::new(super::REGION, ACCOUNT)
    }
}

impl Backup {
    /// An empty model; `region` is the one [`Self::add_recovery_point`] uses (a request's
    /// own region comes from its SigV4 credential scope).
    pub fn new(region: &str, account: &str) -> Backup {
        Backup {
            region: region.to_string(),
            account: account.to_string(),
            plans: Vec::new(),
            selections: Vec::new(),
            recovery_points: Vec::new(),
            handled: Vec::new(),
        }
    }

    // ---- read-back and set-up for tests ----------------------------------------------

    /// Every plan, deleted ones included, in creation order.
    pub fn plans(&self) -> Vec<Plan> {
        self.plans.clone()
    }

    pub fn plan(&self, id: &str) -> Option<Plan> {
        self.plans.iter().find(|p| p.id == id).cloned()
    }

    /// The plans named `name` that are not deleted.
    pub fn live_plans_named(&self, name: &str) -> Vec<Plan> {
        self.plans
            .iter()
            .filter(|p| !p.is_deleted() && p.name() == name)
            .cloned()
            .collect()
    }

    /// The selections of plan `plan_id`, in creation order.
    pub fn selections(&self, plan_id: &str) -> Vec<Selection> {
        self.selections
            .iter()
            .filter(|s| s.plan_id == plan_id)
            .cloned()
            .collect()
    }

    /// The recovery points of vault `vault_name` (any region), in creation order.
    pub fn recovery_points(&self, vault_name: &str) -> Vec<RecoveryPoint> {
        self.recovery_points
            .iter()
            .filter(|r| r.vault_name == vault_name)
            .cloned()
            .collect()
    }

    /// Puts a completed recovery point of `resource_arn` (`resource_type`: `DynamoDB`,
    /// `RDS`, `S3`, ...) into vault `vault_name` of the model's region, as a backup job
    /// would; returns its ARN. The vault is not checked (moto holds the vaults).
    pub fn add_recovery_point(
        &mut self,
        vault_name: &str,
        resource_arn: &str,
        resource_type: &str,
    ) -> String {
        let region = self.region.clone();
        let arn = format!(
            "arn:{}:backup:{region}:{}:recovery-point:{}",
            partition(&region),
            self.account,
            uuid::Uuid::new_v4().to_string().to_uppercase()
        );
        self.recovery_points.push(RecoveryPoint {
            arn: arn.clone(),
            vault_arn: self.vault_arn(&region, vault_name),
            region,
            vault_name: vault_name.to_string(),
            resource_arn: resource_arn.to_string(),
            resource_type: resource_type.to_string(),
            created: now(),
            tags: BTreeMap::new(),
        });
        arn
    }

    /// Removes a recovery point (as DeleteRecoveryPoint or its lifecycle would); whether
    /// it was there.
    pub fn remove_recovery_point(&mut self, arn: &str) -> bool {
        let before = self.recovery_points.len();
        self.recovery_points.retain(|r| r.arn != arn);
        self.recovery_points.len() < before
    }

    /// The operations the model answered (or refused), in order, e.g.
    /// `CreateBackupPlan`, `DeleteBackupVault` (refusals only).
    pub fn handled(&self) -> Vec<String> {
        self.handled.clone()
    }

    // ---- the API ---------------------------------------------------------------------

    /// Routes one request signed for `backup`: the model's answer, moto's, or (for
    /// recovery points) the model's once moto confirmed the vault; see [`answer`].
    pub fn route(&mut self, req: &Request) -> Route {
        let region = region_of(req).unwrap_or_else(|| self.region.clone());
        let path = req.path().trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let query = query_of(req.query());
        let method = req.method.as_str();
        let (op, answer) = match (method, segments.as_slice()) {
            ("PUT", ["backup", "plans"]) => ("CreateBackupPlan", self.create_plan(&region, req)),
            ("GET", ["backup", "plans"]) => ("ListBackupPlans", self.list_plans(&region, &query)),
            ("GET", ["backup", "plans", id]) => ("GetBackupPlan", self.get_plan(id, &query)),
            ("POST", ["backup", "plans", id]) => ("UpdateBackupPlan", self.update_plan(id, req)),
            ("DELETE", ["backup", "plans", id]) => ("DeleteBackupPlan", self.delete_plan(id)),
            ("GET", ["backup", "plans", id, "versions"]) => {
                ("ListBackupPlanVersions", self.list_versions(id, &query))
            }
            ("PUT", ["backup", "plans", id, "selections"]) => {
                ("CreateBackupSelection", self.create_selection(id, req))
            }
            ("GET", ["backup", "plans", id, "selections"]) => {
                ("ListBackupSelections", self.list_selections(id, &query))
            }
            ("GET", ["backup", "plans", id, "selections", sid]) => {
                ("GetBackupSelection", self.get_selection(id, sid))
            }
            ("DELETE", ["backup", "plans", id, "selections", sid]) => {
                ("DeleteBackupSelection", self.delete_selection(id, sid))
            }
            ("GET", ["backup-vaults", vault, "recovery-points"]) => {
                return Route::RecoveryPoints {
                    vault: vault.to_string(),
                };
            }
            ("DELETE", ["backup-vaults", vault]) => {
                match self.refuse_vault_deletion(&region, &decode(vault)) {
                    Some(refusal) => ("DeleteBackupVault", refusal),
                    None => return Route::Moto,
                }
            }
            ("GET", ["tags", arn @ ..]) => match self.list_tags(&decode(&arn.join("/"))) {
                Some(answer) => ("ListTags", answer),
                None => return moto_path(req),
            },
            ("POST", ["tags", arn @ ..]) => match self.tag(&decode(&arn.join("/")), req) {
                Some(answer) => ("TagResource", answer),
                None => return Route::Moto,
            },
            ("POST", ["untag", arn @ ..]) => match self.untag(&decode(&arn.join("/")), req) {
                Some(answer) => ("UntagResource", answer),
                None => return Route::Moto,
            },
            _ => return Route::Moto,
        };
        self.handled.push(op.to_string());
        Route::Answer(answer)
    }

    /// ListRecoveryPointsByBackupVault, for a vault moto has.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListRecoveryPointsByBackupVault.html
    pub fn list_recovery_points(&mut self, req: &Request, vault: &str) -> Response {
        self.handled
            .push("ListRecoveryPointsByBackupVault".to_string());
        let region = region_of(req).unwrap_or_else(|| self.region.clone());
        let vault = decode(vault);
        let query = query_of(req.query());
        let points: Vec<Value> = self
            .recovery_points
            .iter()
            .filter(|r| r.region == region && r.vault_name == vault)
            .filter(|r| {
                query
                    .get("resourceArn")
                    .is_none_or(|a| *a == r.resource_arn)
            })
            .filter(|r| {
                query
                    .get("resourceType")
                    .is_none_or(|t| *t == r.resource_type)
            })
            .map(|r| {
                json!({
                    "RecoveryPointArn": r.arn,
                    "BackupVaultName": r.vault_name,
                    "BackupVaultArn": r.vault_arn,
                    "ResourceArn": r.resource_arn,
                    "ResourceType": r.resource_type,
                    "Status": "COMPLETED",
                    "CreationDate": r.created,
                    "CompletionDate": r.created,
                })
            })
            .collect();
        match page(points, &query) {
            Ok((items, next)) => ok(with_next(json!({ "RecoveryPoints": items }), next)),
            Err(refusal) => refusal,
        }
    }

    fn vault_arn(&self, region: &str, vault: &str) -> String {
        format!(
            "arn:{}:backup:{region}:{}:backup-vault:{vault}",
            partition(region),
            self.account
        )
    }

    fn plan_index(&self, id: &str) -> Option<usize> {
        self.plans.iter().position(|p| p.id == id)
    }

    /// CreateBackupPlan.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupPlan.html
    fn create_plan(&mut self, region: &str, req: &Request) -> Response {
        let body = match body_of(req) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let document = match plan_document(&body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let creator = str_of(&body, "CreatorRequestId");
        // A retried request (same CreatorRequestId) gets the plan it made: "allows failed
        // requests to be retried without the risk of running the operation twice".
        if let Some(c) = &creator
            && let Some(p) = self
                .plans
                .iter()
                .find(|p| !p.is_deleted() && p.creator_request_id.as_ref() == Some(c))
        {
            return ok(created_plan(p));
        }
        // moto refuses a plan whose name any plan ever had, deleted or not. AWS compares
        // the plan document with the plans that are not deleted ("Backup plan with the
        // same plan document already exists"); a deleted plan's document may be used
        // again. The name alone is not compared: a plan with the same name and other
        // rules is a new plan.
        if let Some(p) = self.plans.iter().find(|p| {
            !p.is_deleted() && p.region == region && same_document(&p.current().document, &document)
        }) {
            return error(
                "AlreadyExistsException",
                "Backup plan with the same plan document already exists",
            )
            .map_body(|b| {
                b["Arn"] = json!(p.arn);
                b["CreatorRequestId"] = json!(p.creator_request_id);
            });
        }
        let tags = match tags_of(&body, "BackupPlanTags") {
            Ok(t) => t,
            Err(e) => return e,
        };
        let id = uuid::Uuid::new_v4().to_string();
        let plan = Plan {
            arn: format!(
                "arn:{}:backup:{region}:{}:backup-plan:{id}",
                partition(region),
                self.account
            ),
            id,
            region: region.to_string(),
            versions: vec![PlanVersion {
                version_id: version_id(),
                created: now(),
                document,
            }],
            tags,
            creator_request_id: creator,
            deletion_date: None,
        };
        let answer = created_plan(&plan);
        self.plans.push(plan);
        ok(answer)
    }

    /// ListBackupPlans: the plans that are not deleted, unless `includeDeleted=true`.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListBackupPlans.html
    fn list_plans(&self, region: &str, query: &BTreeMap<String, String>) -> Response {
        let include_deleted = query.get("includeDeleted").map(String::as_str) == Some("true");
        let items: Vec<Value> = self
            .plans
            .iter()
            .filter(|p| p.region == region && (include_deleted || !p.is_deleted()))
            .map(|p| list_member(p, p.current()))
            .collect();
        match page(items, query) {
            Ok((items, next)) => ok(with_next(json!({ "BackupPlansList": items }), next)),
            Err(refusal) => refusal,
        }
    }

    /// GetBackupPlan (of `versionId`, else the current version). A deleted plan is still
    /// returned, with its `DeletionDate` (moto agrees).
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_GetBackupPlan.html
    fn get_plan(&self, id: &str, query: &BTreeMap<String, String>) -> Response {
        let Some(plan) = self.plan_index(id).map(|i| &self.plans[i]) else {
            return plan_not_found(id);
        };
        let version = match query.get("versionId") {
            Some(v) => match plan.versions.iter().find(|x| x.version_id == *v) {
                Some(version) => version,
                None => {
                    return error(
                        "ResourceNotFoundException",
                        format!("Failed reading Backup plan with provided version {v}"),
                    );
                }
            },
            None => plan.current(),
        };
        let mut out = json!({
            "BackupPlan": version.document,
            "BackupPlanId": plan.id,
            "BackupPlanArn": plan.arn,
            "VersionId": version.version_id,
            "CreationDate": version.created,
        });
        if let Some(c) = &plan.creator_request_id {
            out["CreatorRequestId"] = json!(c);
        }
        if let Some(d) = plan.deletion_date {
            out["DeletionDate"] = json!(d);
        }
        if let Some(a) = version.document.get("AdvancedBackupSettings") {
            out["AdvancedBackupSettings"] = a.clone();
        }
        ok(out)
    }

    /// UpdateBackupPlan: a new version (a new `VersionId`) with the document sent. moto
    /// answers 500.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_UpdateBackupPlan.html
    fn update_plan(&mut self, id: &str, req: &Request) -> Response {
        let body = match body_of(req) {
            Ok(b) => b,
            Err(e) => return e,
        };
        let Some(i) = self.plan_index(id).filter(|i| !self.plans[*i].is_deleted()) else {
            return plan_not_found(id);
        };
        let document = match plan_document(&body) {
            Ok(d) => d,
            Err(e) => return e,
        };
        let version = PlanVersion {
            version_id: version_id(),
            created: now(),
            document,
        };
        let plan = &mut self.plans[i];
        plan.versions.push(version);
        let version = plan.current();
        let mut out = json!({
            "BackupPlanId": plan.id,
            "BackupPlanArn": plan.arn,
            "CreationDate": version.created,
            "VersionId": version.version_id,
        });
        if let Some(a) = version.document.get("AdvancedBackupSettings") {
            out["AdvancedBackupSettings"] = a.clone();
        }
        ok(out)
    }

    /// DeleteBackupPlan: "A backup plan can only be deleted after all associated
    /// selections of resources have been deleted" (AWS answers InvalidRequestException
    /// "Related backup plan selections must be deleted prior to backup plan deletion";
    /// moto deletes it anyway). The plan stays readable with its `DeletionDate`.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_DeleteBackupPlan.html
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/deleting-a-backup-plan.html
    fn delete_plan(&mut self, id: &str) -> Response {
        let Some(i) = self.plan_index(id).filter(|i| !self.plans[*i].is_deleted()) else {
            return plan_not_found(id);
        };
        if self.selections.iter().any(|s| s.plan_id == id) {
            return error(
                "InvalidRequestException",
                "Related backup plan selections must be deleted prior to backup plan deletion",
            );
        }
        let plan = &mut self.plans[i];
        let deleted = now();
        plan.deletion_date = Some(deleted);
        ok(json!({
            "BackupPlanId": plan.id,
            "BackupPlanArn": plan.arn,
            "DeletionDate": deleted,
            "VersionId": plan.version_id(),
        }))
    }

    /// ListBackupPlanVersions: every version, newest first. moto answers 500.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListBackupPlanVersions.html
    fn list_versions(&self, id: &str, query: &BTreeMap<String, String>) -> Response {
        let Some(plan) = self.plan_index(id).map(|i| &self.plans[i]) else {
            return plan_not_found(id);
        };
        let items: Vec<Value> = plan
            .versions
            .iter()
            .rev()
            .map(|v| list_member(plan, v))
            .collect();
        match page(items, query) {
            Ok((items, next)) => ok(with_next(json!({ "BackupPlanVersionsList": items }), next)),
            Err(refusal) => refusal,
        }
    }

    /// CreateBackupSelection: moto has no selections (it answers 500).
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_CreateBackupSelection.html
    fn create_selection(&mut self, plan_id: &str, req: &Request) -> Response {
        let body = match body_of(req) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if self
            .plan_index(plan_id)
            .filter(|i| !self.plans[*i].is_deleted())
            .is_none()
        {
            return plan_not_found(plan_id);
        }
        let Some(document) = body.get("BackupSelection").filter(|s| s.is_object()) else {
            return missing("BackupSelection");
        };
        let name = match required_name(document, "SelectionName", NAME_CHARS, 1) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let Some(role) = str_of(document, "IamRoleArn") else {
            return missing("IamRoleArn");
        };
        if !role.starts_with("arn:") || !role.contains(":iam::") || !role.contains(":role/") {
            return invalid(format!("Invalid IAM role ARN {role}"));
        }
        let creator = str_of(&body, "CreatorRequestId");
        if let Some(c) = &creator
            && let Some(s) = self
                .selections
                .iter()
                .find(|s| s.plan_id == plan_id && s.creator_request_id.as_ref() == Some(c))
        {
            return ok(created_selection(s));
        }
        let selection = Selection {
            id: uuid::Uuid::new_v4().to_string(),
            plan_id: plan_id.to_string(),
            name,
            iam_role_arn: role,
            created: now(),
            creator_request_id: creator,
            document: document.clone(),
        };
        let answer = created_selection(&selection);
        self.selections.push(selection);
        ok(answer)
    }

    /// ListBackupSelections.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListBackupSelections.html
    fn list_selections(&self, plan_id: &str, query: &BTreeMap<String, String>) -> Response {
        if self.plan_index(plan_id).is_none() {
            return plan_not_found(plan_id);
        }
        let items: Vec<Value> = self
            .selections
            .iter()
            .filter(|s| s.plan_id == plan_id)
            .map(|s| {
                let mut m = json!({
                    "SelectionId": s.id,
                    "SelectionName": s.name,
                    "BackupPlanId": s.plan_id,
                    "CreationDate": s.created,
                    "IamRoleArn": s.iam_role_arn,
                });
                if let Some(c) = &s.creator_request_id {
                    m["CreatorRequestId"] = json!(c);
                }
                m
            })
            .collect();
        match page(items, query) {
            Ok((items, next)) => ok(with_next(json!({ "BackupSelectionsList": items }), next)),
            Err(refusal) => refusal,
        }
    }

    /// GetBackupSelection.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_GetBackupSelection.html
    fn get_selection(&self, plan_id: &str, id: &str) -> Response {
        let Some(s) = self
            .selections
            .iter()
            .find(|s| s.plan_id == plan_id && s.id == id)
        else {
            return selection_not_found(plan_id, id);
        };
        let mut out = json!({
            "BackupSelection": s.document,
            "SelectionId": s.id,
            "BackupPlanId": s.plan_id,
            "CreationDate": s.created,
        });
        if let Some(c) = &s.creator_request_id {
            out["CreatorRequestId"] = json!(c);
        }
        ok(out)
    }

    /// DeleteBackupSelection: an empty 200.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_DeleteBackupSelection.html
    fn delete_selection(&mut self, plan_id: &str, id: &str) -> Response {
        let before = self.selections.len();
        self.selections
            .retain(|s| !(s.plan_id == plan_id && s.id == id));
        if self.selections.len() == before {
            return selection_not_found(plan_id, id);
        }
        empty()
    }

    /// DeleteBackupVault: "A vault can be deleted only if it is empty"; AWS answers
    /// InvalidRequestException "Backup vault cannot be deleted because it contains
    /// recovery points." (moto deletes it anyway). `None`: moto deletes the vault.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_DeleteBackupVault.html
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/delete-a-vault.html
    fn refuse_vault_deletion(&self, region: &str, vault: &str) -> Option<Response> {
        let held = self
            .recovery_points
            .iter()
            .any(|r| r.region == region && r.vault_name == vault);
        held.then(|| {
            error(
                "InvalidRequestException",
                "Backup vault cannot be deleted because it contains recovery points.",
            )
            .map_body(|b| b["Code"] = json!("ERROR_9101"))
        })
    }

    /// The tags of a model resource (a plan or a recovery point); `None` for any other
    /// ARN (vaults: moto's).
    fn tags_mut(&mut self, arn: &str) -> Option<Option<&mut BTreeMap<String, String>>> {
        if is_plan_arn(arn) {
            return Some(
                self.plans
                    .iter_mut()
                    .find(|p| p.arn == arn)
                    .map(|p| &mut p.tags),
            );
        }
        if is_recovery_point_arn(arn) {
            let point = self.recovery_points.iter_mut().find(|r| r.arn == arn);
            return Some(point.map(|r| &mut r.tags));
        }
        None
    }

    /// ListTags of a plan or recovery point.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListTags.html
    fn list_tags(&mut self, arn: &str) -> Option<Response> {
        Some(match self.tags_mut(arn)? {
            Some(tags) => ok(json!({ "Tags": tags })),
            None => arn_not_found(arn),
        })
    }

    /// TagResource of a plan or recovery point: the keys sent are added or replaced.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_TagResource.html
    fn tag(&mut self, arn: &str, req: &Request) -> Option<Response> {
        let found = self.tags_mut(arn)?;
        let answer = (|| {
            let body = body_of(req)?;
            let Some(tags) = found else {
                return Err(arn_not_found(arn));
            };
            if body.get("Tags").is_none() {
                return Err(missing("Tags"));
            }
            tags.extend(tags_of(&body, "Tags")?);
            Ok(empty())
        })();
        Some(answer.unwrap_or_else(|e| e))
    }

    /// UntagResource of a plan or recovery point.
    /// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_UntagResource.html
    fn untag(&mut self, arn: &str, req: &Request) -> Option<Response> {
        let found = self.tags_mut(arn)?;
        let answer = (|| {
            let body = body_of(req)?;
            let Some(tags) = found else {
                return Err(arn_not_found(arn));
            };
            let Some(keys) = body.get("TagKeyList").and_then(Value::as_array) else {
                return Err(missing("TagKeyList"));
            };
            for k in keys.iter().filter_map(Value::as_str) {
                tags.remove(k);
            }
            Ok(empty())
        })();
        Some(answer.unwrap_or_else(|e| e))
    }
}

/// moto's ListTags takes the ARN from the path's last-but-one segment: it expects the
/// path as botocore writes it, with a trailing slash (as the API reference does, `GET
/// /tags/resourceArn/`), where the Rust SDK writes none, and so answers no tags for
/// every vault. Such a request goes to moto with the slash.
/// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_ListTags.html
fn moto_path(req: &Request) -> Route {
    let path = req.path();
    if path.ends_with('/') {
        return Route::Moto;
    }
    let target = match req.query() {
        "" => format!("{path}/"),
        query => format!("{path}/?{query}"),
    };
    Route::MotoAt { target }
}

/// The front's handling of one request signed for `backup`: the model's answer, or
/// `None` for moto to answer it as it came. `moto` sends a request to moto and gives
/// its answer (`None` when moto did not answer): ListRecoveryPointsByBackupVault asks it
/// whether the vault exists (DescribeBackupVault), as AWS answers
/// ResourceNotFoundException for a vault that does not; [`Route::MotoAt`] requests go
/// to moto at their corrected path.
pub async fn answer<F, Fut>(model: &Mutex<Backup>, req: &Request, moto: F) -> Option<Response>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Option<Response>>,
{
    let route = model.lock().unwrap().route(req);
    match route {
        Route::Answer(answer) => Some(answer),
        Route::Moto => None,
        Route::MotoAt { target } => {
            let mut fixed = req.clone();
            fixed.target = target;
            moto(fixed).await
        }
        Route::RecoveryPoints { vault } => {
            let mut describe = req.clone();
            describe.method = "GET".to_string();
            describe.target = format!("/backup-vaults/{vault}");
            describe.body.clear();
            match moto(describe).await?.status {
                200 => Some(model.lock().unwrap().list_recovery_points(req, &vault)),
                _ => Some(error(
                    "ResourceNotFoundException",
                    format!("Backup vault {} not found", decode(&vault)),
                )),
            }
        }
    }
}

// ---- the wire --------------------------------------------------------------------------

trait MapBody {
    fn map_body(self, f: impl FnOnce(&mut Value)) -> Response;
}

impl MapBody for Response {
    /// Edits a JSON answer's body.
    fn map_body(mut self, f: impl FnOnce(&mut Value)) -> Response {
        let mut body: Value = serde_json::from_slice(&self.body).unwrap_or_else(|_| json!({}));
        f(&mut body);
        self.body = body.to_string().into_bytes();
        self
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn ok(body: Value) -> Response {
    Response::json(200, &body).header("x-amzn-requestid", request_id())
}

/// A 200 with an empty body (DeleteBackupSelection, TagResource, UntagResource).
fn empty() -> Response {
    Response::new(200, Vec::new()).header("x-amzn-requestid", request_id())
}

/// An AWS Backup error: REST-JSON names it in `x-amzn-errortype` (which the SDK reads
/// before the body's `__type` or `code`); the body carries `Message`. AWS Backup
/// documents HTTP 400 for every client error, ResourceNotFoundException included (e.g.
/// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_GetBackupPlan.html#API_GetBackupPlan_Errors).
fn error(code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "Message": message.into() });
    Response::json(400, &body)
        .header("x-amzn-errortype", code)
        .header("x-amzn-requestid", request_id())
}

fn missing(member: &str) -> Response {
    error(
        "MissingParameterValueException",
        format!("Missing required parameter {member}"),
    )
}

fn invalid(message: impl Into<String>) -> Response {
    error("InvalidParameterValueException", message)
}

fn plan_not_found(id: &str) -> Response {
    error(
        "ResourceNotFoundException",
        format!("Failed reading Backup plan with provided version {id}"),
    )
}

fn selection_not_found(plan_id: &str, id: &str) -> Response {
    error(
        "ResourceNotFoundException",
        format!("Backup selection {id} of backup plan {plan_id} not found"),
    )
}

fn arn_not_found(arn: &str) -> Response {
    error(
        "ResourceNotFoundException",
        format!("Resource not found: {arn}"),
    )
}

fn with_next(mut body: Value, next: Option<String>) -> Value {
    if let Some(n) = next {
        body["NextToken"] = json!(n);
    }
    body
}

/// One page of `items` by `maxResults` (1 to 1000) and `nextToken` (an offset here).
fn page(
    items: Vec<Value>,
    query: &BTreeMap<String, String>,
) -> Result<(Vec<Value>, Option<String>), Response> {
    let start = match query.get("nextToken") {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| invalid(format!("Invalid nextToken {t}")))?,
        None => 0,
    };
    let max = match query.get("maxResults") {
        Some(m) => match m.parse::<usize>() {
            Ok(n @ 1..=1000) => n,
            _ => return Err(invalid(format!("Invalid maxResults {m}"))),
        },
        None => 1000,
    };
    let end = start.saturating_add(max).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    let page = items.into_iter().skip(start).take(max).collect();
    Ok((page, next))
}

fn body_of(req: &Request) -> Result<Value, Response> {
    if req.body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(error(
            "SerializationException",
            "The request body is not a JSON object",
        )),
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn tags_of(body: &Value, key: &str) -> Result<BTreeMap<String, String>, Response> {
    let Some(tags) = body.get(key) else {
        return Ok(BTreeMap::new());
    };
    let Some(map) = tags.as_object() else {
        return Err(invalid(format!("{key} must be a map of strings")));
    };
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(v) => Ok((k.clone(), v.to_string())),
            None => Err(invalid(format!("{key}: the value of {k} is not a string"))),
        })
        .collect()
}

/// `^[a-zA-Z0-9\-\_\.]{1,50}$`: plan, rule and selection names.
const NAME_CHARS: &str = "-_.";
/// `^[a-zA-Z0-9\-\_]{2,50}$`: vault names.
const VAULT_CHARS: &str = "-_";

fn required_name(v: &Value, key: &str, extra: &str, min: usize) -> Result<String, Response> {
    let Some(name) = str_of(v, key) else {
        return Err(missing(key));
    };
    let fits = (min..=50).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    if !fits {
        return Err(invalid(format!("Invalid {key} {name:?}")));
    }
    Ok(name)
}

/// The plan document of a CreateBackupPlan or UpdateBackupPlan body, checked as AWS
/// documents it, each rule with a new `RuleId` and AWS's defaults.
/// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_BackupPlanInput.html
/// https://docs.aws.amazon.com/aws-backup/latest/devguide/API_BackupRuleInput.html
fn plan_document(body: &Value) -> Result<Value, Response> {
    let Some(input) = body.get("BackupPlan").and_then(Value::as_object) else {
        return Err(missing("BackupPlan"));
    };
    let input = Value::Object(input.clone());
    required_name(&input, "BackupPlanName", NAME_CHARS, 1)?;
    let Some(rules) = input.get("Rules").and_then(Value::as_array) else {
        return Err(missing("Rules"));
    };
    let mut out = Vec::new();
    for rule in rules {
        let Some(rule) = rule.as_object() else {
            return Err(invalid("A rule must be an object"));
        };
        let mut rule: Map<String, Value> = rule.clone();
        let as_value = Value::Object(rule.clone());
        required_name(&as_value, "RuleName", NAME_CHARS, 1)?;
        required_name(&as_value, "TargetBackupVaultName", VAULT_CHARS, 2)?;
        // "If this value is included, it must be at least 60 minutes to avoid errors."
        let start = rule.get("StartWindowMinutes").and_then(Value::as_i64);
        if start.is_some_and(|m| m < 60) {
            return Err(invalid("StartWindowMinutes must be at least 60 minutes"));
        }
        let complete = rule.get("CompletionWindowMinutes").and_then(Value::as_i64);
        if complete.is_some_and(|m| m < 1) {
            return Err(invalid("CompletionWindowMinutes must be positive"));
        }
        // "the 'retention' setting must be 90 days greater than the 'transition to cold
        // after days' setting".
        let lifecycle = rule.get("Lifecycle").cloned().unwrap_or(Value::Null);
        let cold = lifecycle
            .get("MoveToColdStorageAfterDays")
            .and_then(Value::as_i64);
        let delete = lifecycle.get("DeleteAfterDays").and_then(Value::as_i64);
        if delete.is_some_and(|d| d < 1) {
            return Err(invalid("DeleteAfterDays must be at least 1"));
        }
        if let (Some(cold), Some(delete)) = (cold, delete)
            && delete < cold + 90
        {
            return Err(invalid(
                "DeleteAfterDays must be at least 90 days greater than MoveToColdStorageAfterDays",
            ));
        }
        rule.entry("StartWindowMinutes")
            .or_insert(json!(DEFAULT_START_WINDOW_MINUTES));
        rule.entry("CompletionWindowMinutes")
            .or_insert(json!(DEFAULT_COMPLETION_WINDOW_MINUTES));
        rule.entry("ScheduleExpressionTimezone")
            .or_insert(json!(DEFAULT_TIMEZONE));
        rule.insert(
            "RuleId".to_string(),
            json!(uuid::Uuid::new_v4().to_string()),
        );
        out.push(Value::Object(rule));
    }
    let mut document = input;
    document["Rules"] = Value::Array(out);
    Ok(document)
}

/// Whether two plan documents are the same, `RuleId`s aside.
fn same_document(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(rules) = v.get_mut("Rules").and_then(Value::as_array_mut) {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                r.remove("RuleId");
            }
        }
        v
    }
    strip(a) == strip(b)
}

fn created_plan(p: &Plan) -> Value {
    let v = p.current();
    let mut out = json!({
        "BackupPlanId": p.id,
        "BackupPlanArn": p.arn,
        "CreationDate": v.created,
        "VersionId": v.version_id,
    });
    if let Some(a) = v.document.get("AdvancedBackupSettings") {
        out["AdvancedBackupSettings"] = a.clone();
    }
    out
}

/// A `BackupPlansListMember` (ListBackupPlans, ListBackupPlanVersions).
fn list_member(p: &Plan, v: &PlanVersion) -> Value {
    let mut m = json!({
        "BackupPlanArn": p.arn,
        "BackupPlanId": p.id,
        "CreationDate": v.created,
        "VersionId": v.version_id,
        "BackupPlanName": v.document["BackupPlanName"],
    });
    if let Some(d) = p.deletion_date {
        m["DeletionDate"] = json!(d);
    }
    if let Some(c) = &p.creator_request_id {
        m["CreatorRequestId"] = json!(c);
    }
    if let Some(a) = v.document.get("AdvancedBackupSettings") {
        m["AdvancedBackupSettings"] = a.clone();
    }
    m
}

fn created_selection(s: &Selection) -> Value {
    json!({
        "SelectionId": s.id,
        "BackupPlanId": s.plan_id,
        "CreationDate": s.created,
    })
}

/// `arn:<partition>:backup:<region>:<account>:backup-plan:<id>`.
fn is_plan_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    parts.len() == 7 && parts[0] == "arn" && parts[2] == "backup" && parts[5] == "backup-plan"
}

fn is_recovery_point_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    parts.len() == 7 && parts[0] == "arn" && parts[2] == "backup" && parts[5] == "recovery-point"
}

fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The region of the request's SigV4 credential scope.
fn region_of(req: &Request) -> Option<String> {
    super::proxy::scope(req, 2)
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn query_of(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(&v.replace('+', " ")))
        })
        .collect()
}

fn now() -> f64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    ms as f64 / 1000.0
}

/// A new plan version id: AWS's are random strings of at most 1,024 bytes (base64 of a
/// UUID in practice).
fn version_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(uuid::Uuid::new_v4().to_string())
        .trim_end_matches('=')
        .to_string()
}
