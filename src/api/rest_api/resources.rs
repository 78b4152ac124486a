//! The API's resources: exactly one per route under the root, each with only the
//! methods the definition gives it. What the definition does not have is removed.

use super::{Draft, no};
use crate::api::support::SERVICE;
use crate::api::support::all_items;
use crate::api::support::definition::ROUTES;
use crate::error::{Result, aws, required};
use aws_sdk_apigateway::types::Resource;
use std::collections::HashMap;

impl Draft<'_> {
    /// Removes resources and methods the definition does not have, creates missing
    /// resources; returns the path → resource id map.
    pub(super) async fn converge_resources(
        &mut self,
        root: Option<String>,
    ) -> Result<HashMap<String, String>> {
        let (ctx, api) = (self.ctx, self.api);
        let call = ctx.aws.apigateway.get_resources().rest_api_id(api);
        let all: Vec<Resource> = all_items!(call.embed("methods"), "GetResources", api)?;
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut root = root;
        for r in &all {
            if let (Some(path), Some(id)) = (r.path(), r.id()) {
                if path == "/" {
                    root = Some(id.to_string());
                }
                ids.insert(path.to_string(), id.to_string());
            }
        }
        let root = root.ok_or_else(|| no(api, "root resource"))?;
        let wanted: Vec<String> = ROUTES.iter().map(|r| format!("/{}", r.path)).collect();
        let is_wanted = |path: &str| path == "/" || wanted.iter().any(|w| w == path);
        // What the definition does not have goes: resources (children first) and methods.
        let mut extra: Vec<&Resource> = all
            .iter()
            .filter(|r| r.path().is_some_and(|p| !is_wanted(p)))
            .collect();
        extra.sort_by_key(|r| std::cmp::Reverse(r.path().map(|p| p.matches('/').count())));
        for r in extra {
            let path = r.path().unwrap_or_default();
            if self
                .remove_resource(path, r.id().unwrap_or_default())
                .await?
            {
                ids.remove(path);
            }
        }
        for r in all.iter().filter(|r| r.path().is_some_and(is_wanted)) {
            let path = r.path().unwrap_or_default();
            let methods = r.resource_methods().into_iter().flat_map(|m| m.keys());
            for method in methods {
                let wanted_here = ROUTES
                    .iter()
                    .any(|x| format!("/{}", x.path) == path && x.method == method.as_str());
                if !wanted_here {
                    let id = r.id().unwrap_or_default();
                    self.remove_method(path, id, method).await?;
                }
            }
        }
        let missing: Vec<String> = wanted
            .into_iter()
            .filter(|p| !ids.contains_key(p))
            .collect();
        for path in &missing {
            let part = path.trim_start_matches('/');
            let create = async || {
                let call = ctx.aws.apigateway.create_resource().rest_api_id(api);
                let out = call.parent_id(&root).path_part(part).send().await;
                let out = out.map_err(aws("CreateResource", format!("{api} {path}")))?;
                required(out.id(), "resource id")
            };
            let attribute = format!("resource {path}");
            if let Some(id) = self
                .repair(&attribute, "missing", "created", create)
                .await?
            {
                ids.insert(path.clone(), id);
            }
        }
        Ok(ids)
    }

    /// Removes a resource the definition does not have; true when it did.
    async fn remove_resource(&mut self, path: &str, id: &str) -> Result<bool> {
        let (ctx, api) = (self.ctx, self.api);
        let delete = async || {
            let call = ctx.aws.apigateway.delete_resource().rest_api_id(api);
            let out = call.resource_id(id).send().await;
            SERVICE.found(out.map_err(aws("DeleteResource", format!("{api} {path}"))))
        };
        let attribute = format!("resource {path}");
        let removed = self
            .repair(&attribute, "present", "removed", delete)
            .await?;
        Ok(removed.is_some())
    }

    /// Removes a method the definition does not have from a resource it has.
    async fn remove_method(&mut self, path: &str, id: &str, method: &str) -> Result<()> {
        let (ctx, api) = (self.ctx, self.api);
        let delete = async || {
            let call = ctx.aws.apigateway.delete_method().rest_api_id(api);
            let out = call.resource_id(id).http_method(method).send().await;
            let what = format!("{api} {method} {path}");
            SERVICE.found(out.map_err(aws("DeleteMethod", what)))
        };
        let attribute = format!("method {method} {path}");
        self.repair(&attribute, "present", "removed", delete)
            .await?;
        Ok(())
    }
}
