//! The fuzz target for the configuration: parsing, validation and the lookups made with it.

use std::collections::BTreeSet;

/// `Config::parse` and validation (with every environment variable set to a key), then the
/// lookups the filter makes with a valid configuration on every request.
pub fn config(data: &[u8]) {
    use crate::config::Config;
    let env = |k: &str| (!k.is_empty()).then(|| format!("sk-{k}"));
    let Ok(cfg) = Config::parse(data, &env) else {
        return;
    };
    let headers = |h: &str| match h {
        "authorization" => Some("Bearer sk-gateway".to_string()),
        "x-llm-provider" | "x-team" => Some("a".to_string()),
        _ => None,
    };
    let mut models: BTreeSet<String> = ["gpt-4o", "claude-sonnet-4-5", "", "*"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    models.extend(cfg.providers.iter().flat_map(|p| p.models.keys().cloned()));
    let identity = crate::route::identify(&cfg, &headers);
    let mut n = 0u32;
    for model in &models {
        let mut draw = |total: u32| {
            n = n.wrapping_add(7);
            n % total.max(1)
        };
        // A table with every provider's first key cooling: routing passes over them.
        let cooling = crate::cooldown::Cooling {
            entries: cfg
                .providers
                .iter()
                .map(|p| crate::cooldown::Entry {
                    provider: p.name.clone(),
                    key: 0,
                    until_ms: (model.len() % 3) as u64 * 1_000,
                })
                .collect(),
            at_ms: 500,
        };
        if let Ok(d) = crate::route::route(
            &cfg,
            model,
            "/v1/chat/completions",
            &headers,
            &cooling,
            &mut draw,
        ) {
            if let Some((_, chain)) = &d.failover {
                let plan = crate::failover::Plan::new(
                    chain,
                    "/v1/chat/completions",
                    "chat/completions",
                    true,
                    16,
                );
                assert_eq!(
                    crate::failover::Plan::decode(plan.encode().as_bytes()),
                    Some(plan)
                );
            }
            let _ = d
                .provider
                .path("chat/completions", &d.upstream_model, false);
            let _ = d.provider.credential_header(d.key);
        }
        if let (Some(l), Ok(id)) = (&cfg.limits, &identity) {
            let _ = l.scopes(&id.name, cfg.team_of(&id.name), Some(model));
            let _ = cfg.access.allows(&id.name, cfg.team_of(&id.name), model);
            let _ = l.reservation(u64::MAX, None, u64::MAX);
        }
        let _ = cfg.prices.lookup(None, model);
    }
    let _ = cfg.max_entry_bytes();
}
