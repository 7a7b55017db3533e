//! `providers`: the upstream APIs, how each expects its credential, and the credential itself,
//! read once from the VM environment (the config names only the variable).

use std::collections::BTreeMap;

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
    api_key_env: Option<String>,
    #[serde(default)]
    models: BTreeMap<String, String>,
    #[serde(default)]
    responses: Option<ResponsesApi>,
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
            AuthStyle::None => None,
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
    /// The credential read from the VM environment at configure time.
    pub credential: Option<String>,
    /// The environment variable holding it (the upstream filter reads it itself).
    pub key_env: Option<String>,
    /// Model name mapping applied last, after the route's own rewrite.
    pub models: HashMap<String, String>,
    /// How Responses API requests reach it.
    pub responses: ResponsesApi,
}

impl Provider {
    /// The request path for `endpoint` (`chat/completions`...) and `model`, when this provider's
    /// API puts it somewhere else than the client's path.
    pub fn path(&self, endpoint: &str, model: &str) -> Option<String> {
        if endpoint == RESPONSES_SUFFIX && self.format == Format::Azure {
            // Azure serves the Responses API on its v1 surface only: the deployment is the
            // body's `model`, and the path carries no api-version.
            return Some("/openai/v1/responses".to_string());
        }
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
        }
    }

    /// The header carrying this provider's credential, with its value.
    pub fn credential_header(&self) -> Option<(&'static str, String)> {
        self.auth.header(self.credential.as_deref()?)
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
    let auth = p.auth.unwrap_or(match (&p.api_key_env, format) {
        (None, _) => AuthStyle::None,
        (Some(_), Format::Anthropic) => AuthStyle::XApiKey,
        (Some(_), Format::Azure) => AuthStyle::ApiKey,
        (Some(_), Format::Openai) => AuthStyle::Bearer,
    });
    let credential = credential(&field, auth, p.api_key_env.as_deref(), env)?;
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
    let responses = match (format, p.responses) {
        (Format::Anthropic, Some(ResponsesApi::Native)) => {
            return Err(err(
                format!("{field}.responses"),
                "an anthropic provider has no Responses API: only \"translate\"",
            ))
        }
        (Format::Anthropic, _) => ResponsesApi::Translate,
        (_, r) => r.unwrap_or(ResponsesApi::Native),
    };
    label_name(&field, &name)?;
    Ok(Provider {
        name,
        cluster: p.cluster,
        format,
        api_version,
        auth,
        credential,
        key_env: p.api_key_env,
        models: p.models.into_iter().collect(),
        responses,
    })
}

/// The credential of a provider (`field`) in the variable `var`, as its `auth` needs it.
fn credential(
    field: &str,
    auth: AuthStyle,
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    match (auth, var) {
        (AuthStyle::None, None) => Ok(None),
        (AuthStyle::None, Some(_)) => Err(err(
            format!("{field}.api_key_env"),
            "is set but auth is \"none\"",
        )),
        (_, None) => Err(err(
            format!("{field}.api_key_env"),
            "is required when auth is \"bearer\" or \"api-key\"",
        )),
        (_, Some(var)) => match env(var) {
            Some(v) if !v.is_empty() => Ok(Some(v)),
            _ => Err(err(
                format!("{field}.api_key_env"),
                format!(
                    "environment variable {var} is not set in the Wasm VM (list it in vm_config.environment_variables.host_env_keys)"
                ),
            )),
        },
    }
}

/// The index of the provider `name`; `field` names the reference.
pub(super) fn index(providers: &[Provider], field: &str, name: &str) -> Result<usize, ConfigError> {
    providers
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| err(field, format!("unknown provider \"{name}\"")))
}

/// Bytes kept as they are in a path segment: the unreserved characters (RFC 3986).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A model name as one path segment: unreserved characters kept, the rest percent-encoded.
fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}
