//! `ratelimit-service`: the global rate limit service the gateway's tests and bench run against.
//!
//! It speaks Envoy's `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` over gRPC
//! (h2c), with the protobuf and server types of the `envoy-types` crate, and counts with
//! Kuadrant's `limitador` crate in a real Redis (`AsyncRedisStorage`). Its configuration is the
//! YAML format of envoyproxy/ratelimit, the service production deployments would run:
//!
//! ```yaml
//! domain: llm-gateway
//! descriptors:
//!   - key: consumer                # no value: each distinct value has its own counters
//!     descriptors:
//!       - {key: unit, value: tokens, rate_limit: {unit: minute, requests_per_unit: 1000}}
//! ```
//!
//! Semantics follow envoyproxy/ratelimit: a descriptor's entries are matched level by level
//! (an exact key/value node first, else the node with the key and no value); the `rate_limit`
//! of the node matched by the last entry applies; a descriptor that matches nothing is not
//! limited. Windows are fixed (limitador's). Hits are the descriptor's own `hits_addend` when set,
//! else the request's (0 means 1). Every hit is counted, and a descriptor is `OVER_LIMIT` when
//! its counter would pass the limit with this hit — so a usage report after the fact is never
//! lost, as with envoyproxy/ratelimit.
//!
//! `ratelimit-service --listen 127.0.0.1:0 --redis redis://127.0.0.1:6379 --config c.yaml
//! [--delay-ms N]` prints `listening on 127.0.0.1:PORT` once bound; `--delay-ms` delays every
//! answer (to test callers' timeouts).

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::limit::{Context, Expression, Limit, Predicate};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use serde::Deserialize;
use tonic::{Request, Response, Status};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    domain: String,
    #[serde(default)]
    descriptors: Vec<Node>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Node {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    descriptors: Vec<Node>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct RateLimitConfig {
    unit: UnitName,
    requests_per_unit: u32,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum UnitName {
    Second,
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl UnitName {
    /// The window's length, as envoyproxy/ratelimit divides time (a month is 30 days, a year
    /// 365).
    fn seconds(self) -> u64 {
        match self {
            UnitName::Second => 1,
            UnitName::Minute => 60,
            UnitName::Hour => 3600,
            UnitName::Day => 86_400,
            UnitName::Week => 7 * 86_400,
            UnitName::Month => 30 * 86_400,
            UnitName::Year => 365 * 86_400,
        }
    }

    fn proto(self) -> Unit {
        match self {
            UnitName::Second => Unit::Second,
            UnitName::Minute => Unit::Minute,
            UnitName::Hour => Unit::Hour,
            UnitName::Day => Unit::Day,
            UnitName::Week => Unit::Week,
            UnitName::Month => Unit::Month,
            UnitName::Year => Unit::Year,
        }
    }
}

/// The node a descriptor's entries lead to, and its path (`0.2`) naming the limit.
fn find<'a>(nodes: &'a [Node], entries: &[(String, String)]) -> Option<(String, &'a Node)> {
    let mut level = nodes;
    let mut path = Vec::new();
    let mut found = None;
    for (k, v) in entries {
        let (i, node) = level
            .iter()
            .enumerate()
            .find(|(_, n)| n.key == *k && n.value.as_deref() == Some(v.as_str()))
            .or_else(|| {
                level
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.key == *k && n.value.is_none())
            })?;
        path.push(i.to_string());
        level = &node.descriptors;
        found = Some(node);
    }
    found.map(|n| (path.join("."), n))
}

/// Every node with a `rate_limit`, by path.
fn leaves(nodes: &[Node], prefix: &str, out: &mut Vec<(String, RateLimitConfig)>) {
    for (i, n) in nodes.iter().enumerate() {
        let path = if prefix.is_empty() {
            i.to_string()
        } else {
            format!("{prefix}.{i}")
        };
        if let Some(rl) = n.rate_limit {
            out.push((path.clone(), rl));
        }
        leaves(&n.descriptors, &path, out);
    }
}

struct Service {
    config: Config,
    limiter: AsyncRateLimiter,
    delay: Duration,
}

impl Service {
    async fn new(config: Config, redis: &str, delay: Duration) -> Result<Service, String> {
        let storage = AsyncRedisStorage::new(redis)
            .await
            .map_err(|e| format!("redis {redis}: {e}"))?;
        let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
        let mut all = Vec::new();
        leaves(&config.descriptors, "", &mut all);
        for (path, rl) in all {
            // One limitador limit per configured node; its counters are per distinct descriptor.
            let condition = Predicate::parse(format!("leaf == '{path}'"))
                .map_err(|e| format!("limit {path}: {e:?}"))?;
            let variable =
                Expression::parse("descriptor").map_err(|e| format!("limit {path}: {e:?}"))?;
            limiter.add_limit(Limit::with_id(
                path.clone(),
                config.domain.as_str(),
                u64::from(rl.requests_per_unit),
                rl.unit.seconds(),
                [condition],
                [variable],
            ));
        }
        Ok(Service {
            config,
            limiter,
            delay,
        })
    }

    async fn status(
        &self,
        entries: Vec<(String, String)>,
        hits: u64,
    ) -> Result<DescriptorStatus, Status> {
        let Some((path, node)) = find(&self.config.descriptors, &entries) else {
            return Ok(ok_status());
        };
        let Some(rl) = node.rate_limit else {
            return Ok(ok_status());
        };
        let descriptor = entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("|");
        let ctx: Context = HashMap::from([
            ("leaf".to_string(), path),
            ("descriptor".to_string(), descriptor),
        ])
        .into();
        let ns = self.config.domain.as_str().into();
        let check = self
            .limiter
            .is_rate_limited(&ns, &ctx, hits)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if hits > 0 {
            self.limiter
                .update_counters(&ns, &ctx, hits)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        let limit = u64::from(rl.requests_per_unit);
        let counter = check.counters.first();
        let before = counter.and_then(|c| c.remaining()).unwrap_or(limit);
        let reset = counter
            .and_then(|c| c.expires_in())
            .unwrap_or(Duration::from_secs(rl.unit.seconds()));
        Ok(DescriptorStatus {
            code: if check.limited {
                Code::OverLimit
            } else {
                Code::Ok
            } as i32,
            current_limit: Some(RateLimit {
                requests_per_unit: rl.requests_per_unit,
                unit: rl.unit.proto() as i32,
                ..Default::default()
            }),
            limit_remaining: u32::try_from(before.saturating_sub(hits)).unwrap_or(u32::MAX),
            duration_until_reset: Some(PbDuration {
                seconds: reset.as_secs() as i64,
                nanos: reset.subsec_nanos() as i32,
            }),
            ..Default::default()
        })
    }
}

fn ok_status() -> DescriptorStatus {
    DescriptorStatus {
        code: Code::Ok as i32,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let req = request.into_inner();
        if req.domain != self.config.domain {
            return Err(Status::invalid_argument(format!(
                "unknown domain {:?} (this service serves {:?})",
                req.domain, self.config.domain
            )));
        }
        let default_hits = u64::from(req.hits_addend.max(1));
        let mut statuses = Vec::with_capacity(req.descriptors.len());
        for d in req.descriptors {
            let hits = d.hits_addend.map(|h| h.value).unwrap_or(default_hits);
            let entries = d.entries.into_iter().map(|e| (e.key, e.value)).collect();
            statuses.push(self.status(entries, hits).await?);
        }
        let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
        Ok(Response::new(RateLimitResponse {
            overall_code: if over { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            ..Default::default()
        }))
    }
}

struct Args {
    listen: String,
    redis: String,
    config: String,
    delay_ms: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        listen: "127.0.0.1:0".into(),
        redis: String::new(),
        config: String::new(),
        delay_ms: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => a.listen = value()?,
            "--redis" => a.redis = value()?,
            "--config" => a.config = value()?,
            "--delay-ms" => {
                a.delay_ms = value()?
                    .parse()
                    .map_err(|_| "--delay-ms takes milliseconds")?
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.redis.is_empty() || a.config.is_empty() {
        return Err(
            "usage: ratelimit-service --redis URL --config FILE [--listen ADDR] [--delay-ms N]"
                .into(),
        );
    }
    Ok(a)
}

async fn run() -> Result<(), String> {
    let a = args()?;
    let text = std::fs::read_to_string(&a.config).map_err(|e| format!("{}: {e}", a.config))?;
    let config: Config = serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", a.config))?;
    let service = Service::new(config, &a.redis, Duration::from_millis(a.delay_ms)).await?;
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .map_err(|e| format!("bind {}: {e}", a.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Small request/response pairs: without TCP_NODELAY, Nagle and delayed ACKs add 40 ms.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |s| {
            s.inspect(|s| {
                let _ = s.set_nodelay(true);
            })
        },
    );
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming(incoming)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("ratelimit-service: {e}");
        std::process::exit(1);
    }
}
