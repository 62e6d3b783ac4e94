//! `type: webhook`: a generic HTTP/JSON endpoint.

use super::super::yaml::Pos;
use super::super::{join, key_text, nonempty_string, obj, redact_url, string, Diag, Obj, Secret, SyncConfig};

/// Most records per request (a sanity cap).
pub const MAX_BATCH: usize = 10_000;

pub const KEYS: &[&str] = &["type", "url", "headers", "batch_size", "timeout", "retry", "rate_limit", "max_concurrency"];

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: Secret,
    pub headers: Vec<(String, Secret)>,
}

pub(in crate::config) fn load(d: &mut Diag, o: &mut Obj, path: &str) -> Option<WebhookConfig> {
    let url = o.req(d, "url", "the endpoint that receives POSTed batches").and_then(|n| {
        let u = nonempty_string(d, n, &join(path, "url"))?;
        if reqwest::Url::parse(&u).map(|p| matches!(p.scheme(), "http" | "https")).unwrap_or(false) {
            Some(u)
        } else {
            d.err(n.pos, &join(path, "url"), format!("`{}` is not an http(s) URL", redact_url(&u)));
            None
        }
    });
    let mut headers = Vec::new();
    if let Some(h) = o.get("headers") {
        let hp = join(path, "headers");
        if let Some(mut ho) = obj(d, h, &hp, &[]) {
            for (k, v) in ho.entries {
                let key = key_text(k).to_string();
                let kp = join(&hp, &key);
                if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
                    d.err(k.pos, &kp, "not a valid HTTP header name");
                    continue;
                }
                if let Some(val) = string(d, v, &kp) {
                    if reqwest::header::HeaderValue::from_str(&val).is_err() {
                        d.err(v.pos, &kp, "not a valid HTTP header value (control characters or newlines?)");
                    } else {
                        headers.push((key, Secret(val)));
                    }
                }
            }
            ho.used.fill(true);
            ho.finish(d);
        }
    }
    Some(WebhookConfig { url: Secret(url?), headers })
}

pub(in crate::config) fn validate_sync(_d: &mut Diag, _c: &WebhookConfig, _sync: &SyncConfig, _object_pos: Pos, _dest_path: &str) {
    // A webhook takes every behavior and any object name.
}
