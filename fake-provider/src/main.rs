//! A fake OpenAI provider for the gateway's integration tests and demo (chat completions,
//! completions, embeddings, models and the Responses API), which also speaks Anthropic's
//! Messages API (`POST /v1/messages`, `POST /v1/messages/count_tokens`), AWS Bedrock's
//! Converse API, the Gemini API and Vertex AI (Gemini and Claude), and serves a GCE metadata
//! server's tokens.
//!
//! `fake-provider [--listen 127.0.0.1:0] [--require-key KEY] [--verbose] [cloud flags]`
//! prints `listening on http://ADDR` once bound.

mod anthropic;
mod api;
mod app;
mod bedrock;
mod embed;
mod eventstream;
mod gcp;
mod gemini;
mod logprobs;
mod responses;
mod schema;
mod sigv4;
mod sse;
mod tokens;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::sync::watch;

/// A fake OpenAI provider (chat, completions, embeddings, models, responses) and Anthropic
/// provider (messages, count_tokens).
#[derive(Debug, Parser)]
#[command(name = "fake-provider", version)]
struct Cli {
    /// Address (HOST:PORT) to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Require `Authorization: Bearer KEY` or `api-key: KEY` on every OpenAI request, and
    /// `x-api-key: KEY` on `/v1/messages`.
    #[arg(long, value_name = "KEY")]
    require_key: Option<String>,
    /// Log one line per request to stderr.
    #[arg(long, short)]
    verbose: bool,
    /// Behave as if every request carried this control header (`NAME:VALUE`, repeatable),
    /// e.g. `--force-header x-fake-status:503` for a provider that is down.
    #[arg(long, value_name = "NAME:VALUE")]
    force_header: Vec<String>,
    /// The access key id Bedrock requests must be SigV4-signed with.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", default_value = app::DEFAULT_AWS_ACCESS_KEY_ID)]
    aws_access_key_id: String,
    /// The secret access key of that key id.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true,
        default_value = app::DEFAULT_AWS_SECRET_ACCESS_KEY)]
    aws_secret_access_key: String,
    /// A session token (temporary credentials) signed requests must carry as
    /// `x-amz-security-token`.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true)]
    aws_session_token: Option<String>,
    /// The region of the signature's credential scope.
    #[arg(long, env = "AWS_REGION", default_value = app::DEFAULT_AWS_REGION)]
    aws_region: String,
    /// A Bedrock API key accepted as `Authorization: Bearer KEY` instead of a signature.
    #[arg(long, value_name = "KEY")]
    bedrock_api_key: Option<String>,
    /// The only Gemini API key accepted (`x-goog-api-key` or `?key=`); any key without it.
    #[arg(long, value_name = "KEY")]
    gemini_api_key: Option<String>,
    /// Lifetime of the tokens the metadata server issues.
    #[arg(long, default_value_t = 3600)]
    gcp_token_ttl_secs: u64,
    /// The metadata server's project, and the only one Vertex AI paths may name.
    #[arg(long, value_name = "PROJECT")]
    gcp_project: Option<String>,
}

/// How long in-flight responses may run on after SIGTERM/SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(&cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fake-provider: cannot listen on {}: {e}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("bound socket has an address");
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    // Load the tokenizers now rather than on the first request (a detached
    // thread, so that an early SIGTERM does not wait for it).
    std::thread::spawn(|| {
        tokens::bpe(tiktoken_rs::tokenizer::Tokenizer::O200kBase);
        tokens::bpe(tiktoken_rs::tokenizer::Tokenizer::Cl100kBase);
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut forced_headers = axum::http::HeaderMap::new();
    for h in &cli.force_header {
        let parsed = h.split_once(':').and_then(|(k, v)| {
            Some((
                axum::http::HeaderName::try_from(k.trim()).ok()?,
                axum::http::HeaderValue::try_from(v.trim()).ok()?,
            ))
        });
        match parsed {
            Some((k, v)) => {
                forced_headers.insert(k, v);
            }
            None => {
                eprintln!("fake-provider: --force-header wants NAME:VALUE, got {h:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let app = app::router(app::Config {
        require_key: cli.require_key,
        verbose: cli.verbose,
        forced_headers,
        store: Default::default(),
        clouds: app::Clouds {
            aws: sigv4::Keys {
                access_key_id: cli.aws_access_key_id,
                secret_access_key: cli.aws_secret_access_key,
                session_token: cli.aws_session_token.filter(|t| !t.is_empty()),
                region: cli.aws_region,
            },
            bedrock_api_key: cli.bedrock_api_key,
            gemini_api_key: cli.gemini_api_key,
            gcp_tokens: gcp::Tokens::new(Duration::from_secs(cli.gcp_token_ttl_secs)),
            gcp_project: cli.gcp_project,
        },
    });
    let mut graceful = stop_rx.clone();
    // Small SSE events go out at once, as from a real provider's edge (no Nagle delay).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = graceful.wait_for(|stop| *stop).await;
    });
    let mut deadline = stop_rx;
    let result = tokio::select! {
        r = server => r,
        _ = async {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-provider: server error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
