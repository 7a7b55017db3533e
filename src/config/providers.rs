//! `providers`: the upstream APIs, how each expects its credential, and the credential itself,
//! read once from the VM environment (the config names only the variable).

use std::collections::BTreeMap;
use std::time::Duration;

use hashbrown::HashMap;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

use super::check::{err, label_name, non_empty, required, ConfigError};
use crate::names;

/// The path suffix of the Responses API (`Endpoint::path_suffix`).
const RESPONSES_SUFFIX: &str = "responses";

/// Default `api-version` for Azure OpenAI providers.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    cluster: String,
    #[serde(default)]
    format: Option<Format>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    auth: Option<AuthStyle>,
    #[serde(default)]
    api_key_env: Option<KeyEnvs>,
    #[serde(default)]
    cooldown: Option<RawCooldown>,
    #[serde(default)]
    models: BTreeMap<String, String>,
    #[serde(default)]
    responses: Option<ResponsesApi>,
    #[serde(default)]
    vertex: Option<VertexSite>,
    #[serde(default)]
    token_cluster: Option<String>,
}

/// `api_key_env`: one variable, or a list of them (several keys of one account, or of
/// several accounts, that requests spread over).
#[derive(Deserialize)]
#[serde(untagged)]
enum KeyEnvs {
    One(String),
    Many(Vec<String>),
}

/// Most keys one provider may list.
pub const MAX_KEYS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCooldown {
    #[serde(default)]
    default_ms: Option<u64>,
    #[serde(default)]
    max_ms: Option<u64>,
}

/// How long a provider's key rests after a `429` (see [`crate::cooldown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    /// After a `429` that gave no `Retry-After`.
    pub default: Duration,
    /// The longest rest, whatever the provider asked; zero turns cool-down off.
    pub max: Duration,
}

/// `cooldown.default_ms` when not set.
pub const DEFAULT_COOLDOWN_MS: u64 = 1_000;
/// `cooldown.max_ms` when not set.
pub const DEFAULT_MAX_COOLDOWN_MS: u64 = 60_000;
/// The largest `cooldown.max_ms` (a day).
const MAX_COOLDOWN_MS: u64 = 86_400_000;

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown {
            default: Duration::from_millis(DEFAULT_COOLDOWN_MS),
            max: Duration::from_millis(DEFAULT_MAX_COOLDOWN_MS),
        }
    }
}

/// Where a Vertex AI provider's models live: `/v1/projects/{project}/locations/{location}/...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct VertexSite {
    pub project: String,
    pub location: String,
}

/// How a provider serves the OpenAI Responses API (`/v1/responses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponsesApi {
    /// It serves it itself: Responses requests pass through (OpenAI, Azure OpenAI).
    Native,
    /// It serves chat completions (or Messages) only: the gateway translates.
    Translate,
}

/// The API a provider speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenAI's API and every compatible server (vLLM, Ollama, OpenRouter...).
    #[default]
    Openai,
    /// Anthropic's Messages API (`/v1/messages`): requests and responses are translated.
    Anthropic,
    /// Azure OpenAI: OpenAI's bodies on `/openai/deployments/{deployment}/...?api-version=`,
    /// the deployment being the (mapped) model name.
    Azure,
    /// AWS Bedrock's Converse API (`/model/{modelId}/converse`, `/converse-stream`): requests
    /// and answers translated, the request signed by Envoy's SigV4 filter on the cluster (or a
    /// Bedrock API key as a bearer token).
    Bedrock,
    /// The Google Gemini API (`/v1beta/models/{model}:generateContent`,
    /// `:streamGenerateContent?alt=sse`), its key in `x-goog-api-key`.
    Gemini,
    /// Vertex AI: Gemini models on the Gemini wire and Claude models (a model whose name
    /// starts with `claude`) on Anthropic's, under the project and location of `vertex`, with an
    /// OAuth access token.
    Vertex,
}

/// The wire a request to a provider speaks, once the model is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI's (OpenAI, Azure, compatible servers).
    Openai,
    /// Anthropic's Messages (Anthropic; Claude on Vertex with its own body version).
    Anthropic { vertex: bool },
    /// Bedrock's Converse.
    Bedrock,
    /// Gemini's `generateContent` (the Gemini API; Gemini on Vertex, whose body differs a
    /// little).
    Gemini { vertex: bool },
}

impl Wire {
    /// The wire of a provider of `format` for `model` (the name the provider gets).
    pub fn of(format: Format, model: &str) -> Wire {
        match format {
            Format::Openai | Format::Azure => Wire::Openai,
            Format::Anthropic => Wire::Anthropic { vertex: false },
            Format::Bedrock => Wire::Bedrock,
            Format::Gemini => Wire::Gemini { vertex: false },
            Format::Vertex if model.starts_with("claude") => Wire::Anthropic { vertex: true },
            Format::Vertex => Wire::Gemini { vertex: true },
        }
    }

    /// The translation from OpenAI chat into this wire (`None`: it is OpenAI's).
    pub fn direction(self) -> Option<crate::translate::Direction> {
        use crate::translate::openai_to_gemini::Dialect;
        use crate::translate::Direction;
        match self {
            Wire::Openai => None,
            Wire::Anthropic { .. } => Some(Direction::OpenaiToAnthropic),
            Wire::Bedrock => Some(Direction::OpenaiToBedrock),
            Wire::Gemini { vertex } => Some(Direction::OpenaiToGemini(if vertex {
                Dialect::VertexAi
            } else {
                Dialect::GeminiApi
            })),
        }
    }
}

impl Format {
    /// Whether the provider serves OpenAI's embeddings endpoint.
    pub fn serves_embeddings(self) -> bool {
        matches!(self, Format::Openai | Format::Azure)
    }

    /// Whether the provider speaks OpenAI's API, so that requests to it pass with their body.
    pub fn is_openai(self) -> bool {
        matches!(self, Format::Openai | Format::Azure)
    }
}

/// How a provider expects its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and compatible servers).
    Bearer,
    /// `api-key: <key>` (Azure OpenAI).
    ApiKey,
    /// `x-api-key: <key>` (Anthropic).
    XApiKey,
    /// `x-goog-api-key: <key>` (the Gemini API).
    XGoogApiKey,
    /// Signed with AWS SigV4 by Envoy's `aws_request_signing` filter on the provider's
    /// cluster: the gateway sets no credential (Bedrock).
    AwsSigv4,
    /// `Authorization: Bearer <token>` with an OAuth access token the gateway fetches from the
    /// GCP metadata server on `token_cluster` (GKE workload identity, GCE), cached and
    /// refreshed before it expires (Vertex AI).
    GcpMetadata,
    /// No credential (a local vLLM or Ollama).
    None,
}

impl AuthStyle {
    /// The header carrying `key` in this style, with its value.
    pub fn header(self, key: &str) -> Option<(&'static str, String)> {
        match self {
            AuthStyle::Bearer => Some((names::AUTHORIZATION, format!("Bearer {key}"))),
            AuthStyle::ApiKey => Some((names::API_KEY, key.to_string())),
            AuthStyle::XApiKey => Some((names::X_API_KEY, key.to_string())),
            AuthStyle::XGoogApiKey => Some((names::X_GOOG_API_KEY, key.to_string())),
            AuthStyle::GcpMetadata => Some((names::AUTHORIZATION, format!("Bearer {key}"))),
            AuthStyle::AwsSigv4 | AuthStyle::None => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub cluster: String,
    pub format: Format,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    pub auth: AuthStyle,
    /// The credentials read from the VM environment at configure time (one per key; none
    /// for auth styles without a key). Requests spread over them; metrics and logs name a key
    /// by its index here, never by its value.
    pub credentials: Vec<String>,
    /// The environment variables holding them, in the same order (the upstream filter reads
    /// them itself).
    pub key_envs: Vec<String>,
    /// How long a key rests after a `429`.
    pub cooldown: Cooldown,
    /// Model name mapping applied last, after the route's own rewrite.
    pub models: HashMap<String, String>,
    /// How Responses API requests reach it.
    pub responses: ResponsesApi,
    /// A Vertex AI provider's project and location.
    pub vertex: Option<VertexSite>,
    /// The cluster of the GCP metadata server (`auth: gcp-metadata`).
    pub token_cluster: Option<String>,
}

impl Provider {
    /// The wire a request for `model` (the name the provider gets) speaks.
    pub fn wire(&self, model: &str) -> Wire {
        Wire::of(self.format, model)
    }

    /// The request path for `endpoint` (`chat/completions`...), `model` and whether the
    /// answer streams, when this provider's API puts it somewhere else than the client's path.
    pub fn path(&self, endpoint: &str, model: &str, stream: bool) -> Option<String> {
        if endpoint == RESPONSES_SUFFIX && self.format == Format::Azure {
            // Azure serves the Responses API on its v1 surface only: the deployment is the
            // body's `model`, and the path carries no api-version.
            return Some("/openai/v1/responses".to_string());
        }
        let model_segment = percent_encode(model.strip_prefix("models/").unwrap_or(model));
        let gemini_method = if stream {
            "streamGenerateContent?alt=sse"
        } else {
            "generateContent"
        };
        match self.format {
            Format::Openai => None,
            Format::Anthropic => Some(crate::translate::MESSAGES_PATH.to_string()),
            Format::Azure => Some(format!(
                "/openai/deployments/{}/{endpoint}?api-version={}",
                percent_encode(model),
                self.api_version
                    .as_deref()
                    .unwrap_or(DEFAULT_AZURE_API_VERSION)
            )),
            Format::Bedrock => Some(format!(
                "/model/{model_segment}/{}",
                if stream {
                    "converse-stream"
                } else {
                    "converse"
                }
            )),
            Format::Gemini => Some(format!("/v1beta/models/{model_segment}:{gemini_method}")),
            Format::Vertex => {
                let site = self.vertex.as_ref()?;
                let (publisher, method) = match self.wire(model) {
                    Wire::Anthropic { .. } if stream => ("anthropic", "streamRawPredict"),
                    Wire::Anthropic { .. } => ("anthropic", "rawPredict"),
                    _ => ("google", gemini_method),
                };
                Some(format!(
                    "/v1/projects/{}/locations/{}/publishers/{publisher}/models/{model_segment}:{method}",
                    percent_encode(&site.project),
                    percent_encode(&site.location),
                ))
            }
        }
    }

    /// The header carrying this provider's credential number `key`, with its value.
    pub fn credential_header(&self, key: usize) -> Option<(&'static str, String)> {
        self.auth.header(self.credentials.get(key)?)
    }

    /// How many keys its requests spread over (at least one: a provider without a key is
    /// one "key" for cool-down).
    pub fn keys(&self) -> usize {
        self.credentials.len().max(1)
    }

    /// The variable of key number `key`.
    pub fn key_env(&self, key: usize) -> Option<&str> {
        self.key_envs.get(key).map(String::as_str)
    }
}

/// Validate `providers` (at least one). `body_routing` says whether a provider may need the
/// body (any format but OpenAI's does); `env` reads the VM environment.
pub(super) fn parse(
    raw: BTreeMap<String, RawProvider>,
    body_routing: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Provider>, ConfigError> {
    if raw.is_empty() {
        return Err(err("providers", "at least one provider is required"));
    }
    raw.into_iter()
        .map(|(name, p)| provider(name, p, body_routing, env))
        .collect()
}

fn provider(
    name: String,
    p: RawProvider,
    body_routing: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    let field = format!("providers.{name}");
    required(&format!("{field}.cluster"), &p.cluster)?;
    let format = p.format.unwrap_or_default();
    let key_envs = match p.api_key_env {
        None => Vec::new(),
        Some(KeyEnvs::One(v)) => vec![v],
        Some(KeyEnvs::Many(v)) if v.is_empty() || v.len() > MAX_KEYS => {
            return Err(err(
                format!("{field}.api_key_env"),
                format!("lists 1 to {MAX_KEYS} variables"),
            ))
        }
        Some(KeyEnvs::Many(v)) => v,
    };
    let auth = p.auth.unwrap_or(match (key_envs.first(), format) {
        (None, Format::Bedrock) => AuthStyle::AwsSigv4,
        (None, Format::Vertex) => AuthStyle::GcpMetadata,
        (None, _) => AuthStyle::None,
        (Some(_), Format::Anthropic) => AuthStyle::XApiKey,
        (Some(_), Format::Azure) => AuthStyle::ApiKey,
        (Some(_), Format::Gemini) => AuthStyle::XGoogApiKey,
        (Some(_), Format::Openai | Format::Bedrock | Format::Vertex) => AuthStyle::Bearer,
    });
    check_auth(&field, format, auth)?;
    let credentials = credentials(&field, auth, &key_envs, env)?;
    let cooldown = cooldown(&field, p.cooldown)?;
    let token_cluster = match (
        auth,
        non_empty(&format!("{field}.token_cluster"), p.token_cluster)?,
    ) {
        (AuthStyle::GcpMetadata, Some(c)) => Some(c),
        (AuthStyle::GcpMetadata, None) => {
            return Err(err(
                format!("{field}.token_cluster"),
                "is required with auth \"gcp-metadata\" (the cluster of the metadata server)",
            ))
        }
        (_, Some(_)) => {
            return Err(err(
                format!("{field}.token_cluster"),
                "applies with auth \"gcp-metadata\" only",
            ))
        }
        (_, None) => None,
    };
    let vertex = match (format, p.vertex) {
        (Format::Vertex, Some(v)) => {
            required(&format!("{field}.vertex.project"), &v.project)?;
            required(&format!("{field}.vertex.location"), &v.location)?;
            Some(v)
        }
        (Format::Vertex, None) => {
            return Err(err(
                format!("{field}.vertex"),
                "is required for a vertex provider ({project, location})",
            ))
        }
        (_, Some(_)) => {
            return Err(err(
                format!("{field}.vertex"),
                "applies to vertex providers only",
            ))
        }
        (_, None) => None,
    };
    if format != Format::Openai && !body_routing {
        return Err(err(
            format!("{field}.format"),
            "needs body_routing (the path or body depends on the model)",
        ));
    }
    let api_version = match (
        format,
        non_empty(&format!("{field}.api_version"), p.api_version)?,
    ) {
        (Format::Azure, v) => Some(v.unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.to_string())),
        (_, Some(_)) => {
            return Err(err(
                format!("{field}.api_version"),
                "applies to azure providers only",
            ))
        }
        (_, None) => None,
    };
    let responses = match (format.is_openai(), p.responses) {
        (false, Some(ResponsesApi::Native)) => {
            return Err(err(
                format!("{field}.responses"),
                "only OpenAI-format providers serve the Responses API: only \"translate\"",
            ))
        }
        (false, _) => ResponsesApi::Translate,
        (true, r) => r.unwrap_or(ResponsesApi::Native),
    };
    label_name(&field, &name)?;
    Ok(Provider {
        name,
        cluster: p.cluster,
        format,
        api_version,
        auth,
        credentials,
        key_envs,
        cooldown,
        models: p.models.into_iter().collect(),
        responses,
        vertex,
        token_cluster,
    })
}

/// The credential styles that fit only one format.
fn check_auth(field: &str, format: Format, auth: AuthStyle) -> Result<(), ConfigError> {
    let only = match auth {
        AuthStyle::AwsSigv4 => Format::Bedrock,
        AuthStyle::GcpMetadata => Format::Vertex,
        _ => return Ok(()),
    };
    if format == only {
        return Ok(());
    }
    Err(err(
        format!("{field}.auth"),
        format!("applies to {} providers only", format_name(only)),
    ))
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Openai => "openai",
        Format::Anthropic => "anthropic",
        Format::Azure => "azure",
        Format::Bedrock => "bedrock",
        Format::Gemini => "gemini",
        Format::Vertex => "vertex",
    }
}

/// The credentials of a provider (`field`) in the variables `vars`, as its `auth` needs them.
fn credentials(
    field: &str,
    auth: AuthStyle,
    vars: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ConfigError> {
    let keyless = matches!(
        auth,
        AuthStyle::None | AuthStyle::AwsSigv4 | AuthStyle::GcpMetadata
    );
    match (keyless, vars.is_empty()) {
        (true, true) => return Ok(Vec::new()),
        (true, false) => return Err(err(
            format!("{field}.api_key_env"),
            "is set but the auth style takes no key (\"none\", \"aws-sigv4\", \"gcp-metadata\")",
        )),
        (false, true) => {
            return Err(err(
                format!("{field}.api_key_env"),
                "is required when auth is \"bearer\" or \"api-key\"",
            ))
        }
        (false, false) => {}
    }
    let many = vars.len() > 1;
    vars.iter()
        .enumerate()
        .map(|(i, var)| {
            let at = if many {
                format!("{field}.api_key_env[{i}]")
            } else {
                format!("{field}.api_key_env")
            };
            if vars.iter().take(i).any(|v| v == var) {
                return Err(err(at, format!("{var} is listed twice")));
            }
            match env(var) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(err(
                    at,
                    format!(
                        "environment variable {var} is not set in the Wasm VM (list it in vm_config.environment_variables.host_env_keys)"
                    ),
                )),
            }
        })
        .collect()
}

fn cooldown(field: &str, raw: Option<RawCooldown>) -> Result<Cooldown, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Cooldown::default());
    };
    let default_ms = raw.default_ms.unwrap_or(DEFAULT_COOLDOWN_MS);
    let max_ms = raw.max_ms.unwrap_or(DEFAULT_MAX_COOLDOWN_MS);
    if max_ms > MAX_COOLDOWN_MS {
        return Err(err(
            format!("{field}.cooldown.max_ms"),
            format!("is at most {MAX_COOLDOWN_MS} (a day); 0 turns cool-down off"),
        ));
    }
    if max_ms > 0 && default_ms > max_ms {
        return Err(err(
            format!("{field}.cooldown.default_ms"),
            format!("is more than cooldown.max_ms ({max_ms})"),
        ));
    }
    Ok(Cooldown {
        default: Duration::from_millis(default_ms),
        max: Duration::from_millis(max_ms),
    })
}

/// The index of the provider `name`; `field` names the reference.
pub(super) fn index(providers: &[Provider], field: &str, name: &str) -> Result<usize, ConfigError> {
    providers
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| err(field, format!("unknown provider \"{name}\"")))
}

/// Bytes kept as they are in a path segment: the unreserved characters (RFC 3986) and `@`
/// (Vertex AI's model versions, `claude-sonnet-4-5@20250929`, as Google's own URLs write them).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'@');

/// A model name as one path segment: unreserved characters and `@` kept, the rest
/// percent-encoded (a Bedrock model id's `:` becomes `%3A`, as the AWS SDKs send it).
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}
